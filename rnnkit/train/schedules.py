"""Schedules as pure functions of training progress: the learning rate and the teacher-forcing ratio.

Both are stateless — a function of the step (and of the fraction of the run done) — so ``--resume``
needs no scheduler state beyond the step, and a run's curve can be recomputed from its config.

Learning rate, with ``p`` ∈ [0, 1] the fraction of the run done (steps, or time under a budget):
    warm-up   lr = base · step / warmup_steps               for step < warmup_steps
    constant  lr = base
    linear    lr = base · (1 − (1 − m) · p)                  m = min_lr_ratio
    cosine    lr = base · (m + (1 − m) · (1 + cos π p) / 2)

Teacher forcing ratio ε (the probability of feeding the ground-truth token to the decoder; Bengio et
al. 2015, "Scheduled Sampling"), with ``i`` the step and ``k`` the schedule's speed:
    constant         ε = start
    linear           ε = max(end, start − (start − end) · i / k)
    exponential      ε = max(end, start · 0.5^(i / k))                (halves every k steps)
    inverse_sigmoid  ε = end + (start − end) · k / (k + exp(i / k))
"""
from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "linear", "cosine")
TF_SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")


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


def teacher_forcing_ratio(step: int, *, schedule: str = "constant", start: float = 1.0,
                          end: float = 0.0, k: float = 1000.0) -> float:
    """The probability of teacher forcing at ``step``; see the module docstring for the formulas."""
    if schedule not in TF_SCHEDULES:
        raise ValueError(f"teacher_forcing_ratio: schedule must be one of {TF_SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return start
    if k <= 0:
        raise ValueError(f"teacher_forcing_ratio: k must be > 0, got {k}")
    if schedule == "linear":
        return max(end, start - (start - end) * step / k)
    if schedule == "exponential":
        return max(end, start * 0.5 ** (step / k))
    x = step / k
    return end + (start - end) * (k / (k + math.exp(x)) if x < 700 else 0.0)
