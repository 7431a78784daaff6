"""`--model OWNER/NAME`: models from the Hugging Face Hub through its shared cache, tested offline.

The tests lay files out exactly as huggingface_hub keeps a downloaded repo (blobs named by their
SHA-256, snapshot links, refs/main) under an HF_HOME they make, and run with HF_HUB_OFFLINE=1 in a
fresh process (huggingface_hub reads its environment once, at import).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from magicpose_cli.model_store import PUBLISHED_CHECKPOINT, PUBLISHED_MODEL, RecommendedSettings, locate_model
from magicpose_cli.models import MagicPosePipeline

from conftest import FIXTURE_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
CONVERTED_REPO = "someone/magicpose-converted"


def add_to_hub_cache(hf_home: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Place ``files`` (name in the repo -> local file) in the hub cache as a download of ``repo_id`` would."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, source in files.items():
        blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, blob)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo / "snapshots" / commit


def offline_run(hf_home: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    environment.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", code, *args], env=environment, capture_output=True, text=True, timeout=900)


LOCATE = """
import json, sys
from pathlib import Path
from magicpose_cli.model_store import locate_model
found = {name: str(locate_model(name, Path(sys.argv[1])).folder) for name in sys.argv[2:]}
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def filled_hub(tmp_path_factory, tiny_checkpoint_with_clip, tiny_model_dir) -> Path:
    """An HF_HOME holding the published repo's checkpoint (a tiny one) and a repo with a converted folder."""
    hf_home = tmp_path_factory.mktemp("hf_home")
    checkpoint, _ = tiny_checkpoint_with_clip
    # the tiny checkpoint needs its sizes: a model_config.yaml beside it is read as it is beside a local file
    add_to_hub_cache(hf_home, PUBLISHED_MODEL, {PUBLISHED_CHECKPOINT: checkpoint, "model_config.yaml": FIXTURE_DIR / "model_config.yaml"})
    folder_files = {str(p.relative_to(tiny_model_dir)): p for p in tiny_model_dir.rglob("*") if p.is_file()}
    add_to_hub_cache(hf_home, CONVERTED_REPO, folder_files)
    return hf_home


def test_hub_ids_resolve_offline_from_the_shared_cache(filled_hub, tmp_path, converted_tiny_dir, tiny_model_dir):
    cache = tmp_path / "cache"
    run = offline_run(filled_hub, LOCATE, str(cache), PUBLISHED_MODEL, CONVERTED_REPO)
    assert run.returncode == 0, run.stderr
    found = {name: Path(folder) for name, folder in json.loads(run.stdout.splitlines()[-1]).items()}

    # the published repo: its checkpoint converted once into our cache, in float16, keyed by the blob's hash
    converted = found[PUBLISHED_MODEL]
    assert converted.parent == cache / "models"
    provenance = json.loads((converted / "converted_from.json").read_text())
    blob = (filled_hub / "hub" / "models--Boese0601--MagicDance" / "blobs").iterdir()
    assert provenance["checkpoint_sha256"] in [p.name for p in blob] and provenance["dtype"] == "fp16"
    ours, reference = MagicPosePipeline.from_pretrained(converted), MagicPosePipeline.from_pretrained(converted_tiny_dir)
    reference_unet = reference.unet.state_dict()
    assert all(torch.equal(v, reference_unet[k].half().float()) for k, v in ours.unet.state_dict().items())
    assert ours.empty_prompt is not None
    # converted with the yaml beside it (unknown sizes): the original inference's sampler settings
    assert RecommendedSettings.read(converted) == RecommendedSettings(steps=50, guidance=7.0, scheduler="ddim")

    # a repo holding a converted folder is used where the hub cache keeps it, unconverted
    assert found[CONVERTED_REPO].parent.name == "snapshots"
    assert (found[CONVERTED_REPO] / "unet" / "config.json").read_bytes() == (tiny_model_dir / "unet" / "config.json").read_bytes()


def test_without_network_or_cache_one_line_says_what_to_fetch_and_how_to_place_it(tmp_path):
    output = tmp_path / "out"
    run = offline_run(tmp_path / "empty_hf_home", "from magicpose_cli.cli import app; app()", "convert", PUBLISHED_MODEL, "-o", str(output))
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"could not fetch {PUBLISHED_CHECKPOINT}" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert f"huggingface.co/{PUBLISHED_MODEL}/resolve/main/{PUBLISHED_CHECKPOINT}" in lines[0]
    assert f"--model /path/to/{PUBLISHED_CHECKPOINT}" in lines[0]
    assert not output.exists()


def test_a_local_path_wins_over_a_hub_id_of_the_same_spelling(tmp_path, tiny_model_dir, monkeypatch):
    local = tmp_path / PUBLISHED_MODEL
    shutil.copytree(tiny_model_dir, local)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    location = locate_model(PUBLISHED_MODEL, tmp_path / "cache")
    assert location.folder.resolve() == local.resolve()
