"""`magicpose batch JOBS_TOML`: many retargets in one run, handed to magicpose_cli.retarget.batch (imported when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from magicpose_cli.cli.app import command, console, detail, report_output
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import check_exists

if TYPE_CHECKING:
    from magicpose_cli.retarget.batch import BatchReport, Job

BATCH_HELP = """Run the retargets a jobs file lists, loading each model once.

\b
JOBS_TOML: retarget options at the top are every job's defaults; each \\[\\[jobs]] table gives
reference, driving and output (paths relative to the file) and any option of its own:
  model = "Boese0601/MagicDance"
  steps = 25
  \\[\\[jobs]]
  reference = "alice.png"
  driving = "salsa.mp4"
  output = "out/alice-salsa.mp4"
  \\[\\[jobs]]
  reference = "bob.png"
  driving = "salsa.mp4"
  output = "out/bob-salsa.mp4"
  seed = 3
Options are spelled as `magicpose retarget` spells them, without the dashes (batch-size = 8,
audio = false, fit = "crop"). A job whose output exists is skipped, a failed job is reported
and the next one runs; a table at the end lists every job.

\b
Several GPUs share each job's frames when launched as several processes:
  accelerate launch --num_processes N -m magicpose_cli batch JOBS_TOML
"""


@command("batch", help=BATCH_HELP)
def batch_command(
    jobs_file: Path = typer.Argument(..., help="The jobs file (TOML).", metavar="JOBS_TOML"),
    overwrite: bool = typer.Option(False, help="Run the jobs whose output exists too, replacing it."),
    debug: bool = typer.Option(False, help="Stop at the first failed job and show its traceback."),
) -> None:
    check_exists(jobs_file, "jobs file")
    from magicpose_cli.retarget.batch import read_jobs, run_jobs

    jobs = read_jobs(jobs_file)
    report = run_jobs(jobs, overwrite, console=console, on_notice=console.print, on_detail=detail, on_job=announce(len(jobs)), debug=debug)
    console.print(report_table(report))
    for result in report.results:
        if result.status == "done":
            report_output(result.job.output)
    failed = report.count("failed")
    console.print(
        f"{report.count('done')} done, {report.count('skipped')} skipped, {failed} failed; "
        f"{report.model_loads} model load{'s' if report.model_loads != 1 else ''}", highlight=False,
    )  # fmt: skip
    if failed:
        raise MagicPoseError(f"{failed} of {len(jobs)} jobs failed (the table above says why)")


def announce(count: int):
    def on_job(job: Job) -> None:
        console.rule(f"job {job.number} of {count}: {job.reference.name} + {job.driving.name} -> {job.output}", style="dim")

    return on_job


def report_table(report: BatchReport) -> Table:
    table = Table("job", "output", "result", "", title="batch", title_justify="left")
    colour = {"done": "green", "skipped": "yellow", "failed": "red"}
    for result in report.results:
        status = f"[{colour[result.status]}]{result.status}[/]"
        table.add_row(str(result.job.number), str(result.job.output), status, result.detail)
    return table
