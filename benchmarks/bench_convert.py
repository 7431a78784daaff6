"""Peak memory of converting a checkpoint at the published size, against the file's size.

Writes a checkpoint with the exact layout of the published model_state-110000.th
(tests/fixtures/original_sd15_layout/keys.json; every tensor with its own storage, as the
original training saves them) in the chosen dtype, converts it in a fresh process with
``magicpose convert`` (no --config: SD 1.5 sizes; float16 output, as for inference) and reports
that process's peak resident memory (VmHWM, which counts the memory-mapped checkpoint pages it
touched) as a ratio of the file size, the wall time and the folder size. Everything is deleted
afterwards unless --keep.

    python benchmarks/bench_convert.py --work-dir /tmp/bench_convert               # float16 file, 4.6 GB
    python benchmarks/bench_convert.py --work-dir /tmp/bench_convert --dtype float32  # the published 9.2 GB

The tensors are zeros read from a sparse file, so writing the checkpoint needs little memory;
conversion does not look at the values, so its cost is that of the real file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

LAYOUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "original_sd15_layout" / "keys.json"


def write_layout_checkpoint(path: Path, dtype: torch.dtype) -> int:
    """The published layout in ``dtype`` (integer buffers kept), zeros from a sparse file; returns its size."""
    layout = json.loads(LAYOUT.read_text())
    largest = max(torch.Size(entry["shape"]).numel() for entry in layout["keys"])
    zeros = path.with_suffix(".zeros")
    with open(zeros, "wb") as handle:
        handle.truncate(largest * 8)
    state = {}
    for entry in layout["keys"]:
        shape = torch.Size(entry["shape"])
        tensor_dtype = getattr(torch, entry["dtype"]) if entry["dtype"].startswith("int") else dtype
        state[entry["key"]] = torch.from_file(str(zeros), shared=False, size=shape.numel(), dtype=tensor_dtype).view(shape)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64).pow(2)
    state["betas"] = betas.to(dtype)
    torch.save(state, path)
    zeros.unlink()
    return path.stat().st_size


CONVERT = """
import sys
from magicpose_cli.models.conversion import convert_checkpoint
convert_checkpoint(sys.argv[1], sys.argv[2], dtype="fp16")
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(peak_kib * 1024)
"""


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="The checkpoint's dtype.")
    parser.add_argument("--keep", action="store_true", help="Keep the checkpoint and the converted folder.")
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, output = args.work_dir / "model_state-110000.th", args.work_dir / "converted"
    try:
        file_size = write_layout_checkpoint(checkpoint, getattr(torch, args.dtype))
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", CONVERT, str(checkpoint), str(output)], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            raise SystemExit(run.stderr)
        peak = int(run.stdout.split()[-1])
        print(f"checkpoint {file_size / 1e9:.2f} GB ({args.dtype}) -> float16 folder {folder_size(output) / 1e9:.2f} GB")
        print(f"peak RSS {peak / 1e9:.2f} GB = {peak / file_size:.2f}x the file; {seconds:.0f} s")
    finally:
        if not args.keep:
            checkpoint.unlink(missing_ok=True)
            shutil.rmtree(output, ignore_errors=True)


if __name__ == "__main__":
    main()
