"""What the default training-scale canvas costs against 512x512: a FLOP count, no GPU needed.

``retarget`` generates a 9:16 video at 512x896 by default (the short side at the training scale);
the old default letterboxed it into 512x512. This counts, with torch's FLOP counter on the meta
device (no weights are allocated), one forward pass of each network at the published SD 1.5 sizes
(UNet, appearance model, OpenPose ControlNet) at both canvases and prints the ratios. Attention
alone grows with the square of the tokens, convolutions linearly; the count says where the mix lands.

    python benchmarks/bench_canvas.py                 # 512x896 and 896x512 against 512x512
    python benchmarks/bench_canvas.py --sizes 512x512 384x704 512x896
"""

from __future__ import annotations

import argparse

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from magicpose_cli.models import AppearanceUNet
from magicpose_cli.models.configs import sd15_original_config
from magicpose_cli.models.conversion import unet_config


def gigaflops(network: torch.nn.Module, width: int, height: int, control: bool = False) -> float:
    """GFLOP of one forward pass on a ``width`` x ``height`` picture (latents 8x smaller)."""
    latents = torch.zeros(1, 4, height // 8, width // 8, device="meta")
    context = torch.zeros(1, 77, 768, device="meta")
    extra = {"controlnet_cond": torch.zeros(1, 3, height, width, device="meta")} if control else {}
    with FlopCounterMode(display=False) as counter:
        network(latents, torch.tensor([10], device="meta"), context, **extra)
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["512x512", "512x896", "896x512"], help="WxH; the first is the baseline.")
    args = parser.parse_args()
    sizes = [tuple(int(side) for side in text.split("x")) for text in args.sizes]
    original = sd15_original_config()
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config(original, "unet_config"))
        networks = {
            "UNet": (unet, False),
            "appearance model": (AppearanceUNet(**unet_config(original, "appearance_control_stage_config")), False),
            "ControlNet": (ControlNetModel.from_unet(unet, load_weights_from_unet=False), True),
        }
    print("| network | " + " | ".join(f"{w}x{h} GFLOP" for w, h in sizes) + " | " + " | ".join(f"{w}x{h} ratio" for w, h in sizes[1:]) + " |")
    print("| --- |" + " ---: |" * (2 * len(sizes) - 1))
    for name, (network, control) in networks.items():
        counts = [gigaflops(network, width, height, control) for width, height in sizes]
        ratios = [count / counts[0] for count in counts[1:]]
        print(f"| {name} | " + " | ".join(f"{count:.0f}" for count in counts) + " | " + " | ".join(f"{ratio:.2f}" for ratio in ratios) + " |")
    tokens = [(w // 8) * (h // 8) for w, h in sizes]
    print("latent tokens: " + ", ".join(f"{w}x{h}: {t} ({t / tokens[0]:.2f}x, attention {(t / tokens[0]) ** 2:.2f}x)" for (w, h), t in zip(sizes, tokens)))


if __name__ == "__main__":
    main()
