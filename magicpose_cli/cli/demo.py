"""`magicpose demo [-o OUT.mp4]`: the bundled demo model on unseen synthetic people, via magicpose_cli.demo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from magicpose_cli.cli.app import command, console, detail, report_output
from magicpose_cli.demo import DEMO_FRAMES, DEMO_PAIR_SEED, run_demo


@command("demo")
def demo_command(
    output: Path = typer.Option(Path("magicpose_demo.mp4"), "--output", "-o", help="The mp4 to write."),
    frames: int = typer.Option(DEMO_FRAMES, help="Frames of driving motion."),
    steps: Optional[int] = typer.Option(None, help="Denoising steps (default: the demo model's recommendation)."),
    guidance: Optional[float] = typer.Option(None, help="Classifier-free guidance scale (default: the demo model's recommendation)."),
    seed: int = typer.Option(DEMO_PAIR_SEED, help="Which pair of synthetic people to draw."),
    inputs_dir: Optional[Path] = typer.Option(None, help="Keep the reference PNG and the driving OpenPose JSON here (earlier ones are replaced only with --overwrite)."),
    cache_dir: Optional[Path] = typer.Option(
        None, help="Cache root for generated frames (default $MAGICPOSE_CACHE or ~/.cache/magicpose)."
    ),
    overwrite: bool = typer.Option(False, help="Replace OUTPUT and earlier inputs in --inputs-dir if they exist."),
    face_pass: bool = typer.Option(
        True, "--face-pass/--no-face-pass", help="Redraw each face from the reference's face (retarget's face pass); --no-face-pass shows the main pass alone."
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Animate an unseen synthetic person with another's motion using the tiny bundled demo model.

    Writes reference | pose | result side by side, the result's face redrawn by the face pass. The demo model only knows synthetic people
    (see magicpose_cli/demo_model/MODEL_CARD.md); use `magicpose retarget --model` for real weights.
    """
    summary = run_demo(output, frames, steps, guidance, seed, inputs_dir, cache_dir, overwrite, console=console, on_notice=detail, face_pass=face_pass)
    console.print(
        f"[green]demo video:[/] {summary.output} ({summary.frames} frames, {summary.seconds:.1f} s; "
        "made by the tiny demo model trained on synthetic people, 64x64)",
        highlight=False,
    )
    detail("timings: " + ", ".join(f"{part} {seconds:.1f} s" for part, seconds in summary.timings.items()))
    report_output(summary.output)
