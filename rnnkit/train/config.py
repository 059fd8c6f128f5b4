"""``TrainConfig``: every knob of the training loop, typed, with its default in one place.

The CLI's ``--key value`` overrides and ``--config file.toml`` are checked against these fields
(and the model's config dataclass) before anything runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from .schedules import LR_SCHEDULES

#: Fields that may change on ``--resume`` without changing what the run computes (stopping points
#: and logging cadence). Changing any other field is refused: the run would not continue exactly.
RESUMABLE_CHANGES = frozenset({"max_steps", "epochs", "time_budget", "eval_every", "log_every",
                               "checkpoint_every", "patience"})


@dataclass
class TrainConfig:
    """The training loop's settings.

    Stopping: the run ends at the first of ``max_steps`` optimizer steps, ``epochs`` passes over the
    training data, or ``time_budget`` seconds of training that is reached (0 = not a limit; with all
    three 0, one epoch). Evaluation runs every ``eval_every`` steps (0: at the end of each epoch) and
    once at the end; ``patience`` > 0 stops after that many evaluations without improvement of the
    task's main metric (early stopping).
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.9            # SGD only
    nesterov: bool = False           # SGD only
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1        # linear/cosine decay down to lr · min_lr_ratio
    clip_norm: float = 1.0           # global-norm clipping threshold; 0 = off
    clip_value: float = 0.0          # element-wise clipping; 0 = off (only one of the two may be on)
    batch_size: int = 32
    max_steps: int = 0
    epochs: int = 0
    time_budget: float = 0.0         # seconds of training
    eval_every: int = 0
    patience: int = 0
    checkpoint_every: int = 0        # extra resumable saves every N steps (0: at evaluations and the end)
    log_every: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        from ..models.config import check_types

        check_types(self)
        assert self.schedule in LR_SCHEDULES
        for name in ("lr", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig: {name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "momentum", "warmup_steps", "clip_norm", "clip_value", "max_steps",
                     "epochs", "time_budget", "eval_every", "patience", "checkpoint_every", "min_lr_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig: {name} must be >= 0, got {getattr(self, name)}")
        if self.clip_norm > 0 and self.clip_value > 0:
            raise ValueError("TrainConfig: set clip_norm or clip_value, not both (set the other to 0)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
