"""Several processes: retarget, batch and train launched as two real processes on this CPU.

``accelerate launch --multi_gpu`` and ``torchrun --standalone`` start two processes that join one
gloo process group bound to the loopback interface (MASTER_ADDR=127.0.0.1, GLOO_SOCKET_IFNAME=lo),
exactly as they would on two GPUs but for the backend. Each launch pays for two imports of torch
and diffusers, so each one checks several things.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from safetensors.torch import load_file
from test_motion import tiny_adapter
from test_retarget import waving_poses
from test_train import config, make_frame_folders, weights

from magicpose_cli.distributed import Processes, join_processes
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.keypoints import BODY, FramePose, PersonPose
from magicpose_cli.retarget import RetargetOptions, retarget
from magicpose_cli.retarget.batch import read_jobs
from magicpose_cli.retarget.motion import STATE_FILE
from magicpose_cli.training import train
from magicpose_cli.training.checkpoints import CHECKPOINTS_DIR
from magicpose_cli.training.loss_log import read_loss_log

LOOPBACK = {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
PLAIN = {"NO_COLOR": "1", "COLUMNS": "200"}  # the tables in one line per row
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--main_process_ip", "127.0.0.1", "--main_process_port", "0"]  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
QUICK = ["--no-align", "--width", "64", "--steps", "2", "--batch-size", "2"]
FRAMES = 7  # batches of 2: [0, 1] [2, 3] [4, 5] [6]


def launch(launcher: list[str], *arguments, cwd: Path) -> subprocess.CompletedProcess:
    """``magicpose ARGUMENTS`` started by ``launcher`` (a plain process when empty), its output as text."""
    environment = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    command = [*(launcher or [sys.executable]), "-m", "magicpose_cli", *map(str, arguments)]
    return subprocess.run(command, cwd=cwd, env={**environment, **LOOPBACK, **PLAIN}, capture_output=True, text=True, timeout=900)


def frame_files(cache_root: Path) -> dict[str, bytes]:
    return {f"{path.parent.name}/{path.name}": path.read_bytes() for path in sorted((cache_root / "frames").glob("*/*.png"))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir, reference_png) -> Path:
    folder = tmp_path_factory.mktemp("distributed")
    (folder / "poses").mkdir()
    for index, pose in enumerate(waving_poses(FRAMES)):
        pose.save(folder / "poses" / f"{index:05d}.json")
    (folder / "model").symlink_to(tiny_model_dir)
    (folder / "ref.png").symlink_to(reference_png)
    return folder


@pytest.fixture(scope="module")
def init_model(tiny_model_dir) -> Path:
    return tiny_model_dir


@contextmanager
def threads_of_a_lone_process():
    """In-process runs compute with the threads a process started alone has (other tests may have changed them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(psutil.cpu_count(logical=False))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_a_lone_process_has_as_many_threads_as_physical_cores():
    """What the processes of a launch on the CPU compute with (distributed.use_threads_of_one_process)."""
    environment = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    command = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    assert int(subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout) == psutil.cpu_count(logical=False)


def options(inputs: Path, cache: str) -> RetargetOptions:
    return RetargetOptions(model=inputs / "model", width=64, steps=2, batch_size=2, align=False, cache_root=inputs / cache)


@pytest.fixture(scope="module")
def one_process(inputs) -> Path:
    """The reference: the whole video made by one process."""
    with threads_of_a_lone_process():
        retarget(inputs / "ref.png", inputs / "poses", inputs / "one.mp4", options(inputs, "one"))
    return inputs / "one.mp4"


def test_retarget_on_two_processes_gives_the_bytes_of_one_and_resumes_with_either_count(inputs, one_process):
    def stop_after_first_batch(batch_index: int, num_batches: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), threads_of_a_lone_process():  # one process, stopped for real after its first batch
        retarget(inputs / "ref.png", inputs / "poses", inputs / "stopped.mp4", options(inputs, "shared"), on_batch_saved=stop_after_first_batch)
    assert len(frame_files(inputs / "shared")) == 2

    two = launch(ACCELERATE, "retarget", "ref.png", "poses", "-o", "two.mp4", "--model", "model", *QUICK, "--cache-dir", "shared", cwd=inputs)
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("2 processes share the work") == 1 and two.stderr.count("cache hits") == 1  # the main process speaks
    assert [line.split()[:2] for line in two.stderr.splitlines() if line.split()[:1] == ["generated"]] == [["generated", "5"]]
    assert (inputs / "two.mp4").read_bytes() == one_process.read_bytes()
    assert frame_files(inputs / "shared") == frame_files(inputs / "one")  # lossless frames: the video's codec could hide a difference

    # A run stopped on two processes leaves complete frames; dropping two batches' stands for it, resumed on one.
    run_folder = next((inputs / "shared" / "frames").iterdir())
    for index in (2, 3, 6):
        (run_folder / f"{index:05d}.png").unlink()
    with threads_of_a_lone_process():
        resumed = retarget(inputs / "ref.png", inputs / "poses", inputs / "three.mp4", options(inputs, "shared"))
    assert (resumed.generated, resumed.cache_hits) == (3, 4)
    assert (inputs / "three.mp4").read_bytes() == one_process.read_bytes()


def test_retarget_with_a_motion_module_on_two_processes_shares_the_windows_and_gives_the_bytes_of_one(inputs):
    """Three context windows (frames 0-2, 2-4, 4-6) a step: process 0 predicts the first and the last, process 1
    the middle one; both fuse all three. The two processes go on from a state one process saved after step 1."""
    tiny_adapter(seed=1).save_pretrained(inputs / "adapter")
    motion = {"motion_module": inputs / "adapter", "context_frames": 3, "context_overlap": 1, "audio": False}

    def stop(*_):
        raise KeyboardInterrupt

    with threads_of_a_lone_process():
        retarget(inputs / "ref.png", inputs / "poses", inputs / "motion-one.mp4", replace(options(inputs, "motion-one"), **motion))
        with pytest.raises(KeyboardInterrupt):
            retarget(inputs / "ref.png", inputs / "poses", inputs / "stopped.mp4", replace(options(inputs, "motion-two"), **motion), on_state_saved=stop)
    assert len(list((inputs / "motion-two").glob(f"frames/*/{STATE_FILE}"))) == 1

    flags = ["--motion-module", "adapter", "--context-frames", 3, "--context-overlap", 1, "--no-audio"]
    two = launch(TORCHRUN, "retarget", "ref.png", "poses", "-o", "motion-two.mp4", "--model", "model", *QUICK, *flags, "--cache-dir", "motion-two", cwd=inputs)
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("2 processes share the work on the CPU: each step's context windows") == 1
    assert (inputs / "motion-two.mp4").read_bytes() == (inputs / "motion-one.mp4").read_bytes()
    assert frame_files(inputs / "motion-two") == frame_files(inputs / "motion-one")
    assert not list((inputs / "motion-two").glob(f"frames/*/{STATE_FILE}"))  # removed once, by the main process


def test_the_face_pass_on_two_processes_gives_the_bytes_of_one(inputs, one_process):
    """The face pass's stage shared by two processes, from the main frames one process made (copied: only the faces are made)."""
    head = np.zeros((18, 3), np.float32)
    head[[BODY["nose"], BODY["right_eye"], BODY["left_eye"]]] = [(64, 44, 1), (57, 37, 1), (71, 37, 1)]
    FramePose(128, 128, [PersonPose(body=head)]).save(inputs / "ref_pose.json")
    for cache in ("face-one", "face-two"):
        shutil.copytree(inputs / "one", inputs / cache)
    face = {"face_pass": True, "face_strength": 0.5, "reference_pose": inputs / "ref_pose.json"}
    with threads_of_a_lone_process():
        alone = retarget(inputs / "ref.png", inputs / "poses", inputs / "face-one.mp4", replace(options(inputs, "face-one"), **face))
    assert alone.cache_hits == FRAMES
    flags = ["--face-pass", "--face-strength", 0.5, "--reference-pose", "ref_pose.json"]
    two = launch(ACCELERATE, "retarget", "ref.png", "poses", "-o", "face-two.mp4", "--model", "model", *QUICK, *flags, "--cache-dir", "face-two", cwd=inputs)
    assert two.returncode == 0, two.stderr
    assert two.stderr.count(f"face pass: {FRAMES} of {FRAMES} frames") == 1
    assert (inputs / "face-two.mp4").read_bytes() == (inputs / "face-one.mp4").read_bytes() != one_process.read_bytes()
    assert frame_files(inputs / "face-two") == frame_files(inputs / "face-one")


def test_batch_under_torchrun_shares_the_frames_skips_and_carries_on_after_a_bad_job(inputs, one_process):
    (inputs / "broken.png").write_bytes(b"not an image")
    (inputs / "broken.mp4").write_bytes(b"not a video")
    (inputs / "done.mp4").write_bytes(b"made earlier")
    jobs = inputs / "jobs.toml"
    jobs.write_text(
        'model = "model"\nwidth = 64\nsteps = 2\nbatch-size = 2\nalign = false\ncache-dir = "batch-cache"\n'
        '[[jobs]]\nreference = "ref.png"\ndriving = "poses"\noutput = "out/seed1.mp4"\nseed = 1\n'
        '[[jobs]]\nreference = "broken.png"\ndriving = "poses"\noutput = "out/broken.mp4"\n'
        '[[jobs]]\nreference = "ref.png"\ndriving = "broken.mp4"\noutput = "out/no-video.mp4"\n'  # fails on the main process first
        '[[jobs]]\nreference = "ref.png"\ndriving = "poses"\noutput = "out/seed0.mp4"\n'
        '[[jobs]]\nreference = "ref.png"\ndriving = "poses"\noutput = "done.mp4"\n'
    )
    result = launch(TORCHRUN, "batch", "jobs.toml", cwd=inputs)
    assert result.returncode == 1  # a job failed
    rows = {line.split("│")[1].strip(): line for line in result.stderr.splitlines() if line.count("│") == 5 and line.split("│")[1].strip().isdigit()}
    assert sorted(rows) == ["1", "2", "3", "4", "5"]  # one table: only the main process prints
    assert "done" in rows["1"] and "done" in rows["4"] and "skipped" in rows["5"]
    assert "failed" in rows["2"] and "cannot read reference image" in rows["2"]
    assert "failed" in rows["3"] and "cannot read" in rows["3"]  # the other process heard of it and went on in step
    assert "2 done, 1 skipped, 2 failed; 1 model load" in result.stderr
    assert result.stderr.count("error: 2 of 5 jobs failed") == 1
    assert (inputs / "out" / "seed0.mp4").read_bytes() == one_process.read_bytes()  # made by two processes, after another job
    made, expected = frame_files(inputs / "batch-cache"), frame_files(inputs / "one")
    assert all(made[name] == frame for name, frame in expected.items())
    assert (inputs / "done.mp4").read_bytes() == b"made earlier"
    assert not (inputs / "out" / "broken.mp4").exists() and not (inputs / "out" / "no-video.mp4").exists()


def test_train_on_two_processes_writes_once_resumes_exactly_and_matches_one_process_with_twice_the_batch(init_model, tmp_path):
    data = make_frame_folders(tmp_path / "data", videos=2, frames=5)
    common = ["--data", data, "--stage", "pose", "--model", init_model, "--resolution", 32, "--num-workers", 0,
              "--learning-rate", "1e-3", "--seed", 7, "--batch-size", 1, "--checkpoint-every", 2, "--sample-steps", 2, "--sample-count", 1]  # fmt: skip
    straight = launch(ACCELERATE, "train", *common, "--max-steps", 4, "--sample-every", 2, "-o", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert straight.stdout.split() == [str(Path("straight") / "model")]
    run = tmp_path / "straight"
    assert sorted(path.name for path in (run / CHECKPOINTS_DIR).iterdir()) == ["step-000002", "step-000004"]  # no partial one left
    assert sorted(path.name for path in (run / CHECKPOINTS_DIR / "step-000004").iterdir()) == [
        "controlnet.safetensors", "reference_unet.safetensors", "rng-0.pt", "rng-1.pt", "training_state.pt"]  # fmt: skip
    assert [row["step"] for row in read_loss_log(run)] == [1, 2, 3, 4]  # one writer
    assert sorted(path.name for path in (run / "samples").iterdir()) == ["step-000002.png", "step-000004.png"]

    # The run stopped after its checkpoint at step 2 (it leaves a folder like this one), resumed on two processes.
    shutil.copytree(run, tmp_path / "resumed", ignore=lambda folder, names: {"step-000004", "model", "samples"} & set(names))
    resumed = launch(TORCHRUN, "train", *common, "--max-steps", 4, "--sample-every", 0, "--resume", "-o", "resumed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for component in ("controlnet", "reference_unet"):
        expected, actual = weights(run / "model", component), weights(tmp_path / "resumed" / "model", component)
        assert all(torch.equal(expected[key], actual[key]) for key in expected), component
    assert read_loss_log(tmp_path / "resumed") == read_loss_log(run)

    # One process with batch 2 takes the same samples with the same noise: only the order of float32 sums
    # differs (DDP averages two means of 1, convolutions block their batch sums otherwise), ~1e-6 of
    # each gradient. AdamW passes that on as ~1e-6 of a step where a gradient is well above its eps and
    # as up to a whole step where rounding decides a gradient's sign; after 4 steps the weights' changes
    # differed by 5e-5 to 7e-5 (relative L2) here, while other samples or noise give about 1.
    single = train(config(data, init_model, tmp_path / "single", batch_size=2, max_steps=4))
    for component in ("controlnet", "reference_unet"):
        start = load_file(str(init_model / component / "diffusion_pytorch_model.safetensors"))
        expected, actual = weights(run / "model", component), weights(single, component)
        difference = torch.cat([(expected[key] - actual[key]).flatten() for key in expected]).norm()
        change = torch.cat([(expected[key] - start[key]).flatten() for key in expected]).norm()
        assert difference < 1e-3 * change, component
    single_losses, straight_losses = read_loss_log(tmp_path / "single"), read_loss_log(run)
    assert all(abs(a["loss"] - b["loss"]) <= 1e-4 * abs(b["loss"]) for a, b in zip(single_losses, straight_losses))


def test_a_launch_whose_processes_would_each_do_all_the_work_is_refused(monkeypatch, inputs):
    # accelerate's plain launcher (--num_processes 2 without --multi_gpu on a machine without GPUs) starts one process
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(MagicPoseError, match="started a single process.*--multi_gpu"):
        join_processes(torch.device("cpu"))
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    # two processes that each come up alone (a state made before without cpu=True)
    from accelerate import PartialState

    PartialState()
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(MagicPoseError, match="did not join one process group, so every one would do all the work"):
        join_processes(torch.device("cpu"))
    with pytest.raises(MagicPoseError, match="cannot share one Apple GPU"):
        join_processes(torch.device("mps"))


def test_processes_take_the_missing_batches_in_turn():
    missing = [1, 2, 5, 6, 7]
    parts = [Processes(rank, 3).share(missing) for rank in range(3)]
    assert parts == [[1, 6], [2, 7], [5]]
    assert sorted(sum(parts, [])) == missing


def test_jobs_files_are_checked_before_any_work(tmp_path):
    def jobs(text: str):
        path = tmp_path / "jobs.toml"
        path.write_text(text)
        return read_jobs(path)

    job = '[[jobs]]\nreference = "a.png"\ndriving = "d.mp4"\noutput = "o.mp4"\n'
    [parsed] = jobs('steps = 3\nscheduler = "dpm"\nfit = "crop"\nfps = 12\npose-size = "640x480"\n' + job + "seed = 5\naudio = false\n")
    assert (parsed.reference, parsed.output) == (tmp_path / "a.png", tmp_path / "o.mp4")
    options = parsed.options
    assert (options.steps, options.scheduler.value, options.fit.value, options.fps, options.pose_size) == (3, "dpm", "crop", 12.0, (640, 480))
    assert (options.seed, options.audio) == (5, False)
    refused = {
        "stepz = 3\n" + job: "unknown option 'stepz'",
        'steps = "many"\n' + job: "steps must be int",
        'scheduler = "fast"\n' + job: "scheduler must be one of ddim, dpm, .*unipc, got 'fast'",
        "overwrite = true\n" + job: "unknown option 'overwrite'",
        '[[jobs]]\nreference = "a.png"\ndriving = "d.mp4"\n': "give output",
        job + job: "write the same output",
        "steps = 3\n": "has no jobs",
    }
    for text, message in refused.items():
        with pytest.raises(MagicPoseError, match=message):
            jobs(text)
