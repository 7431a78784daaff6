"""The loss log of a run: ``RUN_DIR/loss.csv`` always, TensorBoard events too when tensorboard is installed."""

from __future__ import annotations

import csv
from pathlib import Path

from magicpose_cli.files import atomic_write_text

LOSS_LOG_FILE = "loss.csv"
TENSORBOARD_DIR = "tensorboard"
COLUMNS = ("step", "loss", "learning_rate")


class LossLog:
    """Appends one CSV row per optimiser step; on resume, rows after the resumed step are dropped first."""

    def __init__(self, run_dir: Path, resumed_step: int = 0) -> None:
        self.path = Path(run_dir) / LOSS_LOG_FILE
        kept = []
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= resumed_step]
        lines = [",".join(COLUMNS)] + [",".join(row[column] for column in COLUMNS) for row in kept]
        atomic_write_text(self.path, "\n".join(lines) + "\n")
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._tensorboard = self._open_tensorboard(Path(run_dir) / TENSORBOARD_DIR)

    @staticmethod
    def _open_tensorboard(folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(log_dir=str(folder))

    def add(self, step: int, loss: float, learning_rate: float) -> None:
        self._writer.writerow([step, f"{loss:.6g}", f"{learning_rate:.6g}"])
        self._handle.flush()
        if self._tensorboard is not None:
            self._tensorboard.add_scalar("train/loss", loss, step)
            self._tensorboard.add_scalar("train/learning_rate", learning_rate, step)

    def close(self) -> None:
        self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_loss_log(run_dir: Path) -> list[dict]:
    """The rows of a run's loss log as ``{"step": int, "loss": float, "learning_rate": float}``."""
    with open(Path(run_dir) / LOSS_LOG_FILE, newline="") as handle:
        return [{"step": int(r["step"]), "loss": float(r["loss"]), "learning_rate": float(r["learning_rate"])}
                for r in csv.DictReader(handle)]  # fmt: skip
