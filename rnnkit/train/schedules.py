"""The learning-rate schedule as a pure function of training progress.

It is stateless — a function of the step and of the fraction of the run done — so ``--resume`` needs
no scheduler state beyond the step, and a run's curve can be recomputed from its config. (The
teacher-forcing schedule of sequence-to-sequence models is the model's own,
``Seq2Seq.teacher_forcing_at(step)``; the trainer hands the step to the task's loss.)

Learning rate, with ``p`` ∈ [0, 1] the fraction of the run done (steps, or time under a budget) and
``m`` = min_lr_ratio: lr = base · decay(p) · warm(step), where

    constant  decay = 1
    linear    decay = 1 − (1 − m) · p
    cosine    decay = m + (1 − m) · (1 + cos π p) / 2
    warm-up   warm  = (step + 1) / warmup_steps for step < warmup_steps, else 1

The two multiply: the decay runs from step 0, so with a warm-up the peak is base · decay(p) at the
warm-up's end (close to base when warmup_steps is a small part of the run), and under ``max_steps`` =
T the last step, at p = (T − 1)/T, is one step short of base · m. Because the decay follows the run's
fraction, a resumed run may not change the run's length under a decaying schedule (``Trainer.resume``
refuses it).

"""
from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "linear", "cosine")


def learning_rate(base: float, step: int, progress: float, *, schedule: str = "constant",
                  warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """The learning rate for optimizer step ``step`` (0-based) at run fraction ``progress``."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"learning_rate: schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    p = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        factor = 1.0
    elif schedule == "linear":
        factor = 1.0 - (1.0 - min_lr_ratio) * p
    else:
        factor = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return base * factor
