"""Memory flat in video length: a long driving input costs (almost) no more peak memory than a short one.

Each run is a fresh Python process (its peak resident memory is the number that matters to a
user) retargeting a tiny model at 256x256, where each frame's pose map alone is 192 KB: a pipeline
that held per-frame maps, frames or latents for the whole video would add at least that much per
frame. The target, 100 KB per extra frame at 512x512, is 25 KB at 256x256 (a quarter of the pixels).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image
from skimage.data import astronaut
from test_retarget import waving_poses

SIZE = 256
LONG = 96  # frames: enough for per-frame data (192 KB a map) to stand far above allocator noise
BUDGET_PER_FRAME = 25_000  # bytes: issue 10's 100 KB per frame at 512x512, scaled to 256x256

RUN = """
import resource, sys
from pathlib import Path
from magicpose_cli.retarget import RetargetOptions, retarget
reference, driving, out, model, cache = map(Path, sys.argv[1:6])
options = RetargetOptions(model=model, width={size}, height={size}, align=False, steps=1, batch_size=8,
                          audio=False, cache_root=cache)
summary = retarget(reference, driving, out, options)
assert summary.frames == int(sys.argv[6]), summary
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""".format(size=SIZE)


def peak_memory(frames: int, reference: Path, model: Path, folder: Path) -> int:
    """Peak resident bytes of one retarget of ``frames`` driving frames, in a process of its own."""
    driving = folder / f"poses-{frames}"
    driving.mkdir()
    motion = waving_poses(5)
    for index in range(frames):
        motion[index % len(motion)].save(driving / f"{index:05d}.json")
    command = [sys.executable, "-c", RUN, str(reference), str(driving), str(folder / f"out-{frames}.mp4"),
               str(model), str(folder / f"cache-{frames}"), str(frames)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_video_length(tiny_model_dir, tmp_path):
    reference = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).resize((SIZE, SIZE)).save(reference)
    short = peak_memory(16, reference, tiny_model_dir, tmp_path)
    long = peak_memory(LONG, reference, tiny_model_dir, tmp_path)
    per_frame = (long - short) / (LONG - 16)
    print(json.dumps({"peak_16": short, "peak_long": long, "bytes_per_extra_frame": per_frame}))
    assert per_frame < BUDGET_PER_FRAME, f"{per_frame:.0f} bytes per extra frame (peak {short} -> {long})"
