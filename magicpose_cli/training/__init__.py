"""``magicpose train``: the two MagicPose training stages on your own videos."""

from magicpose_cli.training.data import PairDataset, TrainingVideo, find_training_videos
from magicpose_cli.training.engine import TrainConfig, Trainer, train
from magicpose_cli.training.stages import STAGES, trained_parts

__all__ = ["STAGES", "PairDataset", "TrainConfig", "Trainer", "TrainingVideo", "find_training_videos", "train", "trained_parts"]
