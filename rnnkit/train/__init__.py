"""Training: the loop (``Trainer``), its config, metrics, checkpoints, schedules, distributed set-up.

``rnnkit.train.tasks`` maps each application (lm, classify, tag, translate, forecast, caption) to its
reader, model, loss and metric; the ``rnnkit`` command line is a thin layer over it.
"""
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .trainer import StepContext, Trainer, TrainingError, TrainResult, TrainTask, seed_everything

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint", "TrainConfig",
           "StepContext", "Trainer", "TrainingError", "TrainResult", "TrainTask", "seed_everything"]
