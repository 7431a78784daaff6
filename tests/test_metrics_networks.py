"""The metrics' networks: the video networks against the original's key layout and outputs, the Fréchet
distance against scipy's formula, LPIPS and pytorch-fid fed as their packages feed them, and clip windows.

tests/fixtures/eval_networks holds every key and shape of the networks DisCo's tool/metrics builds
(resnet3d.resnet50 shortcut B, InceptionI3d(400)) and their outputs for seeded weights (its README says
how they were made). The published resnet-50-kinetics.pth
stores that state dict under "state_dict" with DataParallel's "module." prefix and, saved by PyTorch
0.3, without num_batches_tracked; i3d_pretrained_400.pt is the bare state dict.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg
from skimage import data

from eval_network_seeds import seeded_clip, seeded_state_dict

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.metrics.fid import frechet_distance, inception_features, load_inception
from magicpose_cli.metrics.inputs import match_inputs
from magicpose_cli.metrics.perceptual import load_lpips, lpips_distances
from magicpose_cli.metrics.video import FID_VID, FVD, clip_starts, load_clip_network
from magicpose_cli.metrics.weights import FID_INCEPTION, VGG16

FIXTURES = Path(__file__).parent / "fixtures" / "eval_networks"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def published_checkpoint(name: str, folder: Path, with_batch_counts: bool = False) -> Path:
    """Seeded weights saved in the layout of the published file ``name``."""
    shapes = json.loads((FIXTURES / f"{name}.keys.json").read_text())
    state = seeded_state_dict(shapes)
    if name == "resnet-50-kinetics":
        state = {f"module.{key}": value for key, value in state.items() if with_batch_counts or not key.endswith("num_batches_tracked")}
        state = {"epoch": 200, "arch": "resnet-50", "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}
    path = folder / (f"{name}.pth" if name == "resnet-50-kinetics" else f"{name}.pt")
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def resnet_weights_dir(tmp_path_factory) -> Path:
    """A --weights-dir holding resnet-50-kinetics.pth in the published layout (seeded weights); shared with test_evaluate_command."""
    folder = tmp_path_factory.mktemp("weights")
    published_checkpoint("resnet-50-kinetics", folder)
    return folder


@pytest.mark.parametrize("metric, name", [(FID_VID, "resnet-50-kinetics"), (FVD, "i3d_pretrained_400")])
def test_video_networks_load_the_published_layout_and_compute_the_original(tmp_path, metric, name, resnet_weights_dir):
    folder = resnet_weights_dir if metric is FID_VID else tmp_path
    if metric is FVD:
        published_checkpoint(name, folder)
    network, digest = load_clip_network(metric, folder, torch.device("cpu"))  # strict: every key of the file is used
    assert len(digest) == 64
    shapes = json.loads((FIXTURES / f"{name}.keys.json").read_text())
    assert {key: list(value.shape) for key, value in network.state_dict().items()} == shapes
    with torch.no_grad():
        output = network(seeded_clip(metric.size, 16))[0]
    expected = torch.tensor(json.loads((FIXTURES / f"{name}.expected.json").read_text())["output"])
    assert output.shape == expected.shape == ((2048,) if metric is FID_VID else (400,))
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-4)


def test_a_checkpoint_of_another_network_is_one_line(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "i3d_pretrained_400.pt")
    with pytest.raises(MagicPoseError, match="does not fit the fvd network") as error:
        load_clip_network(FVD, tmp_path, torch.device("cpu"))
    assert "\n" not in str(error.value)


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b, s_a, s_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real))


@pytest.mark.parametrize("samples, dims", [(300, 12), (20, 64)])  # more samples than dimensions, and fewer
def test_frechet_distance_equals_the_scipy_sqrtm_formula(samples, dims):
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(samples, dims))
    b = rng.normal(size=(samples - 5, dims)) @ rng.normal(size=(dims, dims)) * 0.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a, b), rel=1e-7)
    if samples > dims:
        stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
        assert frechet_distance(a, b) == pytest.approx(calculate_frechet_distance(*stats[0], *stats[1]), rel=1e-10)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def photos(size: int = 64) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(getattr(data, name)()).resize((size, size))) for name in ("astronaut", "coffee", "chelsea")]


def test_lpips_equals_the_lpips_package():
    import lpips
    from torchvision.transforms.functional import to_tensor

    network = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()  # a random backbone: nothing to download
    target, generated = photos(), [np.roll(photo, 4, axis=1) for photo in photos()]
    for gen, gt in zip(generated, target):
        ours, ours_disco = lpips_distances(network, gen, gt, torch.device("cpu"))
        with torch.no_grad():
            expected = network(to_tensor(Image.fromarray(gen))[None], to_tensor(Image.fromarray(gt))[None], normalize=True).item()
            expected_disco = network(to_tensor(Image.fromarray(gen))[None], to_tensor(Image.fromarray(gt))[None]).item()  # the original's call
        assert ours == pytest.approx(expected, rel=1e-5) and ours_disco == pytest.approx(expected_disco, rel=1e-5)
        assert ours != pytest.approx(ours_disco, rel=1e-3)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_fid_features_are_pytorch_fids_and_unpublished_weights_are_refused(tmp_path, torch_home):
    """A random Inception in pytorch-fid's place: our features of decoded frames equal pytorch-fid's of the files."""
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3
    from torchvision.models import inception_v3

    random_inception = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    torch.save(random_inception.state_dict(), torch_home / FID_INCEPTION.name)
    network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()  # pytorch-fid loads the file itself
    files = []
    for index, photo in enumerate(photos(80)):
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(photo).save(files[-1])
    ours = inception_features(network, photos(80), torch.device("cpu"))
    theirs = get_activations([str(file) for file in files], network, batch_size=3, dims=2048, device="cpu", num_workers=0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    with pytest.raises(MagicPoseError, match="is not the published pt_inception") as error:
        load_inception(torch.device("cpu"))  # the random file's SHA-256 does not start 6726825d
    assert "\n" not in str(error.value)


def test_lpips_without_vgg16_is_one_line_naming_the_file_and_where(torch_home):
    with pytest.raises(MagicPoseError) as error:
        load_lpips(torch.device("cpu"))
    message = str(error.value)
    assert VGG16.name in message and str(torch_home) in message and VGG16.url in message and "\n" not in message


def test_clip_windows_skip_the_clips_across_a_missing_frame(tmp_path):
    for side in ("gen", "gt"):
        (tmp_path / side).mkdir()
        for number in (n for n in range(25) if n != 7):
            Image.fromarray(np.full((8, 8, 3), number, np.uint8)).save(tmp_path / side / f"frame_{number:03d}.png")
    (pair,) = match_inputs(tmp_path / "gen", tmp_path / "gt")
    assert len(pair) == 24 and pair.frame_numbers[:8] == [0, 1, 2, 3, 4, 5, 6, 8]
    assert clip_starts(pair.frame_numbers) == [8, 9]  # 0..15 and later starts up to 6 would need frame 7
    assert clip_starts(list(range(20))) == [0, 1, 2, 3, 4] and clip_starts(list(range(15))) == []
    assert math.isclose(len(clip_starts(list(range(100)))), 85)


def test_evaluate_runs_fid_vid_with_published_weights_and_skips_fvd_in_one_line(tmp_path, resnet_weights_dir, monkeypatch):
    """The command end to end with a video network: frames 0..18 without frame 1 give 2 clips per side (starting at 2 and 3)."""
    import hashlib

    from typer.testing import CliRunner

    from magicpose_cli.cli import app

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rng = np.random.default_rng(0)
    base = photos(48)[0]
    for side, sigma in (("gen", 10.0), ("gt", 0.0)):
        for number in (n for n in range(19) if n != 1):
            frame = np.roll(base, number, axis=1) + rng.normal(0, sigma, base.shape) if sigma else np.roll(base, number, axis=1)
            write = tmp_path / side / f"TiktokDance_00337_{number:04d}png.png"  # DisCo's flattened names
            write.parent.mkdir(exist_ok=True)
            Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(write)
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "gen"), str(tmp_path / "gt"), "--metrics", "fid_vid,fvd,ssim",
                                      "--weights-dir", str(resnet_weights_dir), "--json", str(tmp_path / "out.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out.json").read_text())
    assert list(report["videos"]) == ["TiktokDance_00337"] and report["frames"] == 18
    assert report["counts"]["fid_vid_clips"] == 2 and report["metrics"]["fid_vid"] > 0 and 0 < report["metrics"]["ssim"] < 1
    assert report["skipped"] == {"fvd": f"i3d_pretrained_400.pt not found in {resnet_weights_dir}: download {FVD.weight.source} into it"}
    checkpoint = resnet_weights_dir / "resnet-50-kinetics.pth"
    assert report["weights"] == {checkpoint.name: hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
