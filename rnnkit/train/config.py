"""``TrainConfig``: every knob of the training loop, typed, with its default in one place.

The CLI's ``--key value`` overrides and ``--config file.toml`` are checked against these fields
(and the model's config dataclass) before anything runs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..diagnostics.monitor import MonitorConfig
from .schedules import LR_SCHEDULES

#: Fields that may change on ``--resume`` without changing what the run computes (stopping points
#: and logging cadence). Changing any other field is refused: the run would not continue exactly. (The
#: run's length — max_steps, epochs, time_budget — is refused too under a decaying lr schedule.)
RESUMABLE_CHANGES = frozenset({"max_steps", "epochs", "time_budget", "eval_every", "log_every",
                               "checkpoint_every", "patience", "explode_threshold", "explode_patience",
                               "vanish_ratio", "probe_every"})


#: Largest seed: each epoch's data order is drawn from seed · 1,000,003 + epoch, which must fit torch's
#: 64-bit seeds (the diagnostics' experiments, which seed batch k with 1,000,003 (seed + 1) + k, use it too).
MAX_SEED = 2**43


@dataclass
class TrainConfig:
    """The training loop's settings.

    Stopping: the run ends at the first of ``max_steps`` optimizer steps, ``epochs`` passes over the
    training data, or ``time_budget`` seconds of training that is reached (0 = not a limit; with all
    three 0, one epoch). Evaluation runs every ``eval_every`` steps (0: at the end of each epoch) and
    once at the end; ``patience`` > 0 stops after that many evaluations without improvement of the
    task's main metric (early stopping).

    Gradient health (``rnnkit.diagnostics.GradientMonitor``; warnings only, the run goes on): a
    global gradient norm (before clipping) above ``explode_threshold`` for ``explode_patience``
    consecutive steps warns that gradients explode (1e3 and 3: far above the usual clipping
    thresholds of 0.25–5, and one spike is common and harmless when clipping). Every
    ``probe_every`` steps (0 = never, the default) the model's recurrent layer ``model.rnn`` is
    probed on up to 8 rows of that step's input: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ for a loss on the last step
    below ``vanish_ratio`` (1e-6) warns that gradients vanish. A probe costs about one training step
    (measured on the demo's LSTM LM, H 256, bptt 100, 1 thread: 150 ms against 190 ms) and is not
    counted in ``time_budget``, like evaluation. It is off by default because it is meant for
    long-range tasks: a healthy LSTM LM over 100 steps reads 1e-21 at initialisation and climbs
    past 1e-6 only after some 300 steps, so it would warn early in every such run.
    """

    #: What ``rnnkit train TASK --help`` shows for a default that is decided later than the dataclass's.
    HELP_DEFAULTS: ClassVar[dict[str, str]] = {"clip_norm": "1.0, or 0 with clip_value",
                                               "epochs": "0 (one epoch if max_steps and time_budget are 0 too)"}

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.9            # SGD only
    nesterov: bool = False           # SGD only
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1        # linear/cosine decay down to lr · min_lr_ratio
    clip_norm: float | None = None   # global-norm clipping threshold; 0 = off; None: 1.0, or 0 with clip_value
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
    explode_threshold: float = 1e3
    explode_patience: int = 3
    vanish_ratio: float = 1e-6
    probe_every: int = 0


    def __post_init__(self) -> None:
        from ..models.config import check_types

        check_types(self)
        if self.clip_norm is None:  # norm clipping at 1.0 unless value clipping was asked for instead
            self.clip_norm = 0.0 if self.clip_value > 0 else 1.0
        assert self.schedule in LR_SCHEDULES
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and math.isnan(value):
                raise ValueError(f"TrainConfig: {f.name} must be a number, got nan")
        for name in ("lr", "weight_decay", "momentum", "clip_norm", "clip_value", "time_budget"):
            if math.isinf(getattr(self, name)):  # (time_budget: 0 is "no limit")
                raise ValueError(f"TrainConfig: {name} must be finite, got {getattr(self, name)}")
        for name in ("lr", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig: {name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "momentum", "warmup_steps", "clip_norm", "clip_value", "max_steps",
                     "epochs", "time_budget", "eval_every", "patience", "checkpoint_every", "min_lr_ratio",
                     "probe_every", "seed"):  # (seed: Python's random.Random(-k) is random.Random(k))
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig: {name} must be >= 0, got {getattr(self, name)}")
        if self.seed > MAX_SEED:  # (the tasks draw epoch e's order from seed · 1,000,003 + e, a 64-bit seed)
            raise ValueError(f"TrainConfig: seed must be at most {MAX_SEED:,}, got {self.seed}")
        if self.min_lr_ratio > 1:
            raise ValueError(f"TrainConfig: min_lr_ratio must be in [0, 1] (the decay ends at lr · min_lr_ratio), "
                             f"got {self.min_lr_ratio}")
        if self.clip_norm > 0 and self.clip_value > 0:
            raise ValueError(f"TrainConfig: clip_norm {self.clip_norm} and clip_value {self.clip_value} are both set; "
                             f"clip by one of them (set the other to 0)")
        self.monitor_config()  # its checks of explode_threshold, explode_patience and vanish_ratio

    def monitor_config(self) -> MonitorConfig:
        """The gradient monitor's settings; clipping itself stays with the trainer (value or norm)."""
        return MonitorConfig(explode_threshold=self.explode_threshold, explode_patience=self.explode_patience,
                             vanish_ratio=self.vanish_ratio, max_norm=self.clip_norm or None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
