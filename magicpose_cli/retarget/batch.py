"""`magicpose batch JOBS.toml`: many retargets in one run, one model load per model.

A jobs file holds defaults at the top (any retarget option) and one ``[[jobs]]`` table per video
(``reference``, ``driving``, ``output`` and any option, which wins over the default). Options are
spelled as on the command line without the dashes (``batch-size`` or ``batch_size``; booleans as
``audio = false``); relative paths are taken from the jobs file's folder. The whole file is checked
before any work; then a job whose output exists is skipped (unless overwriting), a job that fails
is reported in one line and the next one runs. Jobs run grouped by model, in file order within a
model, so the networks are loaded once per model. Under ``accelerate launch`` every job's frames
are shared between the processes as in a single retarget.
"""

from __future__ import annotations

import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from rich.console import Console

from magicpose_cli.distributed import one_line
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.loading import LoadedPipelines
from magicpose_cli.pose.keypoints import parse_pose_size
from magicpose_cli.retarget.options import RetargetOptions, parse_choice
from magicpose_cli.retarget.run import RetargetSummary, retarget

JOB_PATHS = ("reference", "driving", "output")
PATH_OPTIONS = ("frames_dir", "cache_root", "reference_pose")
ALIASES = {"cache_dir": "cache_root"}  # the command line's name for it
NOT_IN_FILES = ("overwrite",)  # the batch command's own flag
OPTION_TYPES = typing.get_type_hints(RetargetOptions)


@dataclass(frozen=True)
class Job:
    number: int  # its place in the jobs file, from 1
    reference: Path
    driving: Path
    output: Path
    options: RetargetOptions


@dataclass(frozen=True)
class JobResult:
    job: Job
    status: str  # "done", "skipped" or "failed"
    detail: str  # what was made, why it was skipped, or the failure's one line
    summary: RetargetSummary | None = None


@dataclass(frozen=True)
class BatchReport:
    results: list[JobResult]  # in the jobs file's order
    model_loads: int

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)


def read_jobs(path: Path) -> list[Job]:
    """Every job of a jobs file, checked: a file that names an unknown option, gives a value of the
    wrong kind or misses a job's reference, driving or output is refused before any work."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise MagicPoseError(f"cannot read jobs file {path}: {error}") from None
    tables = document.pop("jobs", None)
    if not isinstance(tables, list) or not tables or not all(isinstance(table, dict) for table in tables):
        raise MagicPoseError(f"jobs file {path} has no jobs: add a [[jobs]] table with reference, driving and output per video")
    defaults = _options(document, path.parent, f"{path} (defaults)")
    jobs = [_job(number, table, defaults, path) for number, table in enumerate(tables, start=1)]
    outputs = [job.output.resolve() for job in jobs]
    for job, output in zip(jobs, outputs):
        if outputs.count(output) > 1:
            raise MagicPoseError(f"jobs file {path}: job {job.number} and another write the same output {job.output}")
    return jobs


def _job(number: int, table: dict, defaults: dict, path: Path) -> Job:
    where = f"{path} job {number}"
    table = dict(table)
    missing = [name for name in JOB_PATHS if not isinstance(table.get(name), str)]
    if missing:
        raise MagicPoseError(f"{where}: give {' and '.join(missing)} (file paths)")
    reference, driving, output = (_resolve(path.parent, table.pop(name)) for name in JOB_PATHS)
    options = RetargetOptions(**{**defaults, **_options(table, path.parent, where)})
    return Job(number, reference, driving, output, options)


def _options(table: dict, folder: Path, where: str) -> dict:
    """A table's retarget options as RetargetOptions keywords, each value checked against the option's type."""
    known = {field.name for field in fields(RetargetOptions)} - set(NOT_IN_FILES)
    options = {}
    for key, value in table.items():
        name = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if name in JOB_PATHS:
            raise MagicPoseError(f"{where}: {key} belongs in each [[jobs]] table, not in the defaults")
        if name not in known:
            raise MagicPoseError(f"{where}: unknown option {key!r}; the options are retarget's ({', '.join(sorted(known))})")
        options[name] = _converted(name, value, folder, f"{where}: {key}")
    return options


def _converted(name: str, value: object, folder: Path, what: str) -> object:
    kind = next((arg for arg in typing.get_args(OPTION_TYPES[name]) if arg is not type(None)), OPTION_TYPES[name])
    if name in ("model", "motion_module"):  # a path beside the jobs file, else as written (a hub repo, or relative to here)
        return _resolve(folder, value) if isinstance(value, str) and (folder / value).exists() else Path(str(value))
    if name == "pose_size":
        return parse_pose_size(str(value))
    if isinstance(kind, type) and issubclass(kind, Enum):
        return parse_choice(kind, value, what)
    expected = {"Path": str, "bool": bool, "int": int, "float": (int, float)}.get(getattr(kind, "__name__", ""), object)
    if not isinstance(value, expected) or (isinstance(value, bool) and kind is not bool):
        raise MagicPoseError(f"{what} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return _resolve(folder, value) if name in PATH_OPTIONS else float(value) if kind is float else value


def _resolve(folder: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def run_jobs(
    jobs: list[Job],
    overwrite: bool = False,
    console: Console | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_detail: Callable[[str], None] | None = None,
    on_job: Callable[[Job], None] | None = None,
    debug: bool = False,
) -> BatchReport:
    """Run the jobs, grouped by model; a failed job is reported and the next one runs (``debug``:
    the failure is raised instead). ``on_job`` hears of each job as it starts."""
    pipelines = LoadedPipelines()
    results: dict[int, JobResult] = {}
    for job in grouped_by_model(jobs):
        if job.output.exists() and not overwrite:
            results[job.number] = JobResult(job, "skipped", "the output exists (--overwrite replaces it)")
            continue
        if on_job is not None:
            on_job(job)
        started = time.perf_counter()
        try:
            summary = retarget(
                job.reference, job.driving, job.output, replace(job.options, overwrite=overwrite), console=console,
                on_notice=on_notice, on_detail=on_detail, pipelines=pipelines,
            )  # fmt: skip
        except Exception as error:  # every kind: one job's failure must not stop the others
            if debug:
                raise
            results[job.number] = JobResult(job, "failed", one_line(error))
            continue
        detail = f"{summary.frames} frames ({summary.generated} generated) in {time.perf_counter() - started:.1f} s"
        results[job.number] = JobResult(job, "done", detail, summary)
    return BatchReport([results[job.number] for job in jobs], pipelines.loads)


def grouped_by_model(jobs: list[Job]) -> list[Job]:
    """The jobs with the same model (and motion module) next to each other, models in order of first use,
    jobs in file order."""
    models = list(dict.fromkeys(_model_of(job) for job in jobs))
    return sorted(jobs, key=lambda job: (models.index(_model_of(job)), job.number))


def _model_of(job: Job) -> tuple[str, str]:
    return str(job.options.model), str(job.options.motion_module)

