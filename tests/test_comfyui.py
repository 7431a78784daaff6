"""The ComfyUI node pack without ComfyUI: node definitions, the chain against `magicpose retarget`,
a cancelled run resuming, one-line errors, and `magicpose comfyui install`."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import types
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut
from test_encode import make_video
from test_retarget import json_folder  # noqa: F401  (a fixture)
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from magicpose_cli.comfyui import nodes
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.images import read_image
from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.models.context_windows import ContextFusion
from magicpose_cli.models.loading import Device, Precision, Scheduler
from magicpose_cli.pose.detectors import DetectorName
from magicpose_cli.retarget import RetargetOptions, retarget
from magicpose_cli.retarget.presets import Preset
from magicpose_cli.video import FrameSource

COMFY_TYPES = {"IMAGE", "MASK", "STRING", "INT", "FLOAT", "BOOLEAN", nodes.MODEL_TYPE, nodes.POSES_TYPE}


def node(name: str):
    return NODE_CLASS_MAPPINGS[name]()


def as_image(frames) -> torch.Tensor:
    """uint8 frames as a ComfyUI IMAGE, as ComfyUI's loaders make it (value / 255 in float32)."""
    return torch.from_numpy(np.stack(frames)).float() / 255.0


@pytest.mark.parametrize("name", sorted(NODE_CLASS_MAPPINGS))
def test_every_node_is_well_formed(name):
    cls = NODE_CLASS_MAPPINGS[name]
    inputs = cls.INPUT_TYPES()
    assert set(inputs) <= {"required", "optional", "hidden"} and inputs["required"]
    for kind, *spec in [entry for group in inputs.values() for entry in group.values()]:
        spec = spec[0] if spec else {}
        assert (isinstance(kind, str) and kind in COMFY_TYPES) or (isinstance(kind, list) and all(isinstance(choice, str) for choice in kind)), kind
        if isinstance(kind, list) and "default" in spec:
            assert spec["default"] in kind
        if kind in ("INT", "FLOAT") and "default" in spec:
            assert spec["min"] <= spec["default"] <= spec["max"]
    assert isinstance(cls.RETURN_TYPES, tuple) and all(kind in COMFY_TYPES for kind in cls.RETURN_TYPES)
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) and cls.CATEGORY == "MagicPose" and cls.DESCRIPTION
    parameters = list(inspect.signature(getattr(cls, cls.FUNCTION)).parameters)[1:]
    assert parameters == [*inputs["required"], *inputs.get("optional", {})]
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)


def test_the_nodes_offer_the_librarys_choices():
    assert nodes.DEVICES == [member.value for member in Device] and nodes.PRECISIONS == [member.value for member in Precision]
    assert nodes.SCHEDULERS == ["auto", *(member.value for member in Scheduler)]
    assert nodes.PRESETS == [member.value for member in Preset] and nodes.DETECTORS == [member.value for member in DetectorName]
    assert nodes.CONTEXT_FUSIONS == ["auto", *(member.value for member in ContextFusion)]


def test_importing_the_pack_needs_neither_comfyui_nor_torch():
    code = "import sys, magicpose_cli.comfyui as pack; print(len(pack.NODE_CLASS_MAPPINGS), sorted({'torch', 'numpy', 'diffusers', 'comfy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["4", "[]"]


@pytest.fixture(scope="module")
def sliding_person(tmp_path_factory) -> Path:
    """A real photo of a person sliding right in a 4:3 video, 4 frames at 8 fps."""
    photo, frames = astronaut()[:, 64:448], []
    for shift in range(0, 24, 6):
        canvas = np.full((240, 320, 3), 230, np.uint8)
        canvas[:, 40 + shift : 220 + shift] = np.asarray(Image.fromarray(photo).resize((180, 240)))
        frames.append(canvas)
    return make_video(tmp_path_factory.mktemp("driving") / "slide.mp4", frames, fps=8)


def test_the_node_chain_gives_retargets_frames(sliding_person, reference_png, tmp_path, monkeypatch, one_torch_thread):
    options = RetargetOptions(model=DEMO_MODEL_DIR, steps=2, batch_size=2, seed=3, cache_root=tmp_path / "cli", frames_dir=tmp_path / "frames")
    retarget(reference_png, sliding_person, tmp_path / "out.mp4", options)
    expected = [read_image(path) for path in sorted((tmp_path / "frames").glob("*.png"))]

    monkeypatch.setenv("MAGICPOSE_CACHE", str(tmp_path / "comfy"))  # nothing shared with the CLI's run
    source = FrameSource(sliding_person)
    video, reference = as_image([source.frame(index) for index in range(source.frame_count)]), as_image([read_image(reference_png)])
    (model,) = node("MagicPoseLoadModel").load("demo", "cpu", "fp32")
    poses, pose_maps = node("MagicPoseExtractPoses").extract(video, source.fps, True, True, 1.0, "auto", reference)
    (frames,) = node("MagicPoseRetarget").retarget(model, reference, poses, "quality", 2, 0.0, "auto", 3, 2, 0)

    assert pose_maps.shape == (4, 128, 128, 3) and pose_maps.dtype == torch.float32  # aligned: on the reference's canvas
    assert frames.dtype == torch.float32 and frames.shape == (len(expected), *expected[0].shape)
    difference = np.abs((frames.numpy() * 255).round().astype(int) - np.stack(expected).astype(int))
    assert difference.max() <= 1 and len(expected) == 4


class StandInComfy:
    """The two ComfyUI modules the nodes use, with ComfyUI's names and behaviour: a progress bar, and an
    interrupt flag that Cancel sets and the next check raises (and clears). ``cancel_at`` presses
    Cancel when the bar first reaches that value, as a user watching it would."""

    def __init__(self, cancel_at: int):
        self.bar_values: list[int] = []
        self.interrupted = self.cancelled = False
        self.lock = threading.Lock()
        management, utils = types.ModuleType("comfy.model_management"), types.ModuleType("comfy.utils")
        management.InterruptProcessingException = type("InterruptProcessingException", (Exception,), {})
        management.throw_exception_if_processing_interrupted = self.throw_if_interrupted
        stand_in = self

        class ProgressBar:
            def __init__(self, total, node_id=None):
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                stand_in.bar_values.append(value)
                if value >= cancel_at and not stand_in.cancelled:
                    stand_in.interrupted = stand_in.cancelled = True

        utils.ProgressBar = ProgressBar
        self.modules = {"comfy": types.ModuleType("comfy"), "comfy.model_management": management, "comfy.utils": utils}

    def throw_if_interrupted(self):
        with self.lock:
            if self.interrupted:
                self.interrupted = False
                raise self.modules["comfy.model_management"].InterruptProcessingException()


def test_a_cancelled_run_keeps_its_frames_and_the_next_run_makes_only_the_rest(json_folder, reference_png, tmp_path, monkeypatch, one_torch_thread):  # noqa: F811
    monkeypatch.setenv("MAGICPOSE_CACHE", str(tmp_path / "cache"))
    comfy = StandInComfy(cancel_at=300)  # a third of 5 frames: after the first batch
    for name, module in comfy.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    reference = as_image([read_image(reference_png)])
    (model,) = node("MagicPoseLoadModel").load("demo", "cpu", "fp32")
    poses, _ = node("MagicPoseLoadPoses").load(str(json_folder), True, True)

    def run():
        return node("MagicPoseRetarget").retarget(model, reference, poses, "fast", 2, 0.0, "auto", 0, 2, 64)[0]

    with pytest.raises(comfy.modules["comfy.model_management"].InterruptProcessingException):
        run()
    kept = sorted((tmp_path / "cache" / "frames").glob("*/*.png"))
    assert [path.name for path in kept] == ["00000.png", "00001.png"]
    stamps = [path.stat().st_mtime_ns for path in kept]

    frames = run()
    assert frames.shape[0] == 5 and [path.stat().st_mtime_ns for path in kept] == stamps  # the kept frames were not made again
    assert len(list((tmp_path / "cache" / "frames").glob("*/*.png"))) == 5 and comfy.bar_values[-1] == 1000


def test_errors_are_one_line_naming_the_input(tmp_path, json_folder, reference_png):  # noqa: F811
    reference = as_image([read_image(reference_png)])
    failures = [
        (lambda: node("MagicPoseLoadModel").load(str(tmp_path), "cpu", "fp32"), str(tmp_path)),
        (lambda: node("MagicPoseLoadModel").load("demo", "cpu", "fp16"), "fp16"),
        (lambda: node("MagicPoseLoadPoses").load(str(tmp_path / "nope"), True, True), "nope"),
        (lambda: node("MagicPoseLoadPoses").load(str(json_folder), True, True, torch.cat([reference, reference])), "reference must be one image"),
        (lambda: node("MagicPoseExtractPoses").extract(torch.zeros(2, 8), 30.0, True, True, 1.0, "auto"), "frames must be a ComfyUI IMAGE"),
        (lambda: node("MagicPoseExtractPoses").extract(torch.zeros(2, 64, 64, 3), 30.0, True, True, 1.0, "auto"), "no person found"),
    ]
    for failing, named in failures:
        with pytest.raises(MagicPoseError) as error:
            failing()
        assert named in str(error.value) and "\n" not in str(error.value)


def make_comfyui(folder: Path) -> Path:
    """The files that make a folder a ComfyUI checkout (main.py, nodes.py, comfy/, custom_nodes/)."""
    (folder / "comfy").mkdir(parents=True)
    (folder / "custom_nodes").mkdir()
    (folder / "main.py").write_text("")
    (folder / "nodes.py").write_text("")
    return folder


def test_install_writes_a_custom_node_folder_whose_init_exposes_the_mappings(tmp_path):
    comfyui = make_comfyui(tmp_path / "ComfyUI")
    result = CliRunner().invoke(app, ["comfyui", "install", str(comfyui), "--python", sys.executable])
    assert result.exit_code == 0, result.output
    init = comfyui / "custom_nodes" / "magicpose" / "__init__.py"
    code = f"import runpy; pack = runpy.run_path({str(init)!r}); print(sorted(pack['NODE_CLASS_MAPPINGS']) == sorted(pack['NODE_DISPLAY_NAME_MAPPINGS']), len(pack['NODE_CLASS_MAPPINGS']))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["True", "4"]

    again = CliRunner().invoke(app, ["comfyui", "install", str(comfyui), "--python", sys.executable])
    assert again.exit_code == 1 and "--overwrite" in again.output and len(again.output.strip().splitlines()) == 1
    assert CliRunner().invoke(app, ["comfyui", "install", str(comfyui), "--python", sys.executable, "--overwrite"]).exit_code == 0


def test_install_refuses_a_folder_that_is_not_comfyui_and_a_python_without_magicpose(tmp_path):
    result = CliRunner().invoke(app, ["comfyui", "install", str(tmp_path), "--python", sys.executable])
    assert result.exit_code == 1 and "not a ComfyUI folder" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "custom_nodes").exists()

    comfyui = make_comfyui(tmp_path / "ComfyUI")
    bare = subprocess.run([sys.executable, "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True).stdout.strip()
    bare_python = Path(bare) / "bin" / Path(sys.executable).name
    if subprocess.run([str(bare_python), "-c", "import magicpose_cli"], cwd=comfyui, env={}, capture_output=True).returncode == 0:
        pytest.skip(f"{bare_python} has magicpose installed: no Python without it to show")
    result = CliRunner().invoke(app, ["comfyui", "install", str(comfyui), "--python", str(bare_python)], env={"PYTHONPATH": ""})
    assert result.exit_code == 1 and "pip install" in result.output
    assert not (comfyui / "custom_nodes" / "magicpose").exists()


def test_the_registry_entry_is_the_installed_pack_at_this_version():
    import magicpose_cli
    from magicpose_cli.comfyui.install import PACK_INIT

    entry = Path(__file__).resolve().parent.parent / "comfyui_node"
    project = tomllib.loads((entry / "pyproject.toml").read_text())
    assert (entry / "__init__.py").read_text() == PACK_INIT
    assert project["project"]["version"] == magicpose_cli.__version__
    assert project["project"]["dependencies"] == [f"magicpose-cli=={magicpose_cli.__version__}"] == (entry / "requirements.txt").read_text().split()
    assert {"PublisherId", "DisplayName", "Icon"} <= set(project["tool"]["comfy"]) and "Repository" in project["project"]["urls"]


def test_the_example_workflows_use_the_nodes_as_defined():
    import json

    folder = Path(__file__).resolve().parent.parent / "docs" / "comfyui"
    api = json.loads((folder / "retarget_api.json").read_text())
    ui = json.loads((folder / "retarget.json").read_text())
    assert sorted(node["type"] for node in ui["nodes"]) == sorted(node["class_type"] for node in api.values())
    for node in api.values():
        if node["class_type"] in NODE_CLASS_MAPPINGS:
            inputs = NODE_CLASS_MAPPINGS[node["class_type"]].INPUT_TYPES()
            assert set(node["inputs"]) == {*inputs["required"], *inputs.get("optional", {})}
    links = sum(isinstance(value, list) for node in api.values() for value in node["inputs"].values())
    assert len(ui["links"]) == links
