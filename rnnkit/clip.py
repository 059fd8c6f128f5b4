"""Gradient clipping for recurrent nets, and a counter of how often and how hard it clipped.

Exploding gradients are the other half of the long-range problem (Pascanu, Mikolov & Bengio 2013):
a product of T Jacobians can grow as fast as it can shrink, and one huge step undoes training.
Clipping the *global* norm keeps the direction of the step and bounds its length::

    ‖g‖_p = (Σ_params Σ_entries |g|^p)^(1/p)       (p = inf: max |g|)
    g ← g · min(1, max_norm / (‖g‖_p + 1e-6))

Both functions here return the norm **before** clipping, as a 0-dim tensor on the gradients' device
(no host sync; ``float(norm)`` to log it), so a trainer can log how hard it clipped. They give the
same gradients as ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (tests/test_clip.py),
and add two things: ``clip_grad_value`` also reports the norm, and a non-finite norm raises an error
that names the parameters whose gradients are nan or inf when ``parameters`` is a module or
``named_parameters()``.

``ClipStats`` keeps the running counts for a log line::

    stats = ClipStats(max_norm=1.0)
    for batch in data:
        loss.backward()
        stats.clip(model.parameters())   # clips, records, returns the norm before clipping
        opt.step()
    print(stats.summary())   # {'steps': …, 'clipped': …, 'clip_rate': …, 'mean_ratio_when_clipped': …, …}
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Union

import torch
from torch import Tensor, nn

#: What the functions accept: a tensor, an iterable of tensors, a module, or (name, tensor) pairs.
Parameters = Union[Tensor, nn.Module, Iterable[Tensor], Iterable[tuple[str, Tensor]]]

#: Added to the norm before dividing, as torch does, so a zero gradient never divides by zero.
EPS = 1e-6


def _named(parameters: Parameters) -> list[tuple[str, Tensor]]:
    """(name, parameter) pairs; unnamed parameters are called ``param[k]``."""
    if isinstance(parameters, Tensor):
        return [("param[0]", parameters)]
    if isinstance(parameters, nn.Module):
        return list(parameters.named_parameters())
    out = []
    for k, p in enumerate(parameters):
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Tensor):
            out.append((str(p[0]), p[1]))
        elif isinstance(p, Tensor):
            out.append((f"param[{k}]", p))
        else:
            raise TypeError(f"rnnkit.clip: expected tensors or (name, tensor) pairs, got {type(p).__name__}")
    return out


def _check_norm_type(norm_type: float) -> float:
    norm_type = float(norm_type)
    if not norm_type > 0:  # also rejects nan; inf passes
        raise ValueError(f"rnnkit.clip: norm_type must be > 0 or inf, got {norm_type!r}")
    return norm_type


def _nonfinite_report(named: list[tuple[str, Tensor]]) -> str:
    bad = []
    for name, p in named:
        if p.grad is None:
            continue
        n_nan = int(torch.isnan(p.grad).sum())
        n_inf = int(torch.isinf(p.grad).sum())
        if n_nan or n_inf:
            bad.append(f"{name} ({n_nan} nan, {n_inf} inf of {p.grad.numel()})")
    return ", ".join(bad) if bad else "no single gradient is non-finite: the norm overflowed"


def grad_norm(parameters: Parameters, norm_type: float = 2.0, *, error_if_nonfinite: bool = False) -> Tensor:
    """The global ``norm_type``-norm of all gradients, as if concatenated into one vector.

    Parameters without a gradient are skipped; with none at all the norm is 0. Returns a 0-dim tensor.
    ``error_if_nonfinite=True`` raises ``RuntimeError`` naming the offending parameters when the norm
    is nan or inf.
    """
    norm_type = _check_norm_type(norm_type)
    named = [(n, p) for n, p in _named(parameters) if p.grad is not None]
    if not named:
        return torch.tensor(0.0)
    grads = [p.grad.detach() for _, p in named]
    device = grads[0].device
    # One norm per gradient, then the norm of those norms: ‖(‖g_1‖, …, ‖g_k‖)‖_p = ‖g‖_p for every p.
    per = torch.stack([torch.linalg.vector_norm(g, norm_type).to(device) for g in grads])
    total = torch.linalg.vector_norm(per, norm_type)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(
            f"rnnkit.clip: the total {norm_type}-norm of the gradients is {float(total)}; non-finite gradients "
            f"in: {_nonfinite_report(named)}. Lower the learning rate, check the loss for log(0) or a "
            f"division by zero, or pass error_if_nonfinite=False to clip anyway (gradients become nan)."
        )
    return total


@torch.no_grad()
def clip_grad_norm(
    parameters: Parameters, max_norm: float, norm_type: float = 2.0, *, error_if_nonfinite: bool = False
) -> Tensor:
    """Scale all gradients in place so their global norm is at most ``max_norm``.

    Same semantics as ``torch.nn.utils.clip_grad_norm_`` (scale = min(1, max_norm / (norm + 1e-6)),
    ``norm_type`` any p > 0 or ``float('inf')``); returns the norm *before* clipping as a 0-dim tensor.
    With ``error_if_nonfinite=False`` (torch's default) a nan/inf norm is returned and the gradients are
    scaled by a nan factor, exactly as torch does — check ``torch.isfinite(norm)`` or use
    :class:`ClipStats`, which counts such steps.
    """
    if not max_norm > 0:
        raise ValueError(f"rnnkit.clip.clip_grad_norm: max_norm must be > 0, got {max_norm!r}")
    named = [(n, p) for n, p in _named(parameters) if p.grad is not None]
    total = grad_norm(named, norm_type, error_if_nonfinite=error_if_nonfinite)
    if not named:
        return total
    # Multiply even when the factor is 1: a data-dependent `if` would force a device→host sync on GPU.
    scale = torch.clamp(float(max_norm) / (total + EPS), max=1.0)
    for _, p in named:  # (the 0-dim factor in its own dtype, as torch's: a half gradient is scaled in float32
        p.grad.mul_(scale.to(device=p.grad.device))  # arithmetic, then rounded once)
    return total


@torch.no_grad()
def clip_grad_value(
    parameters: Parameters, clip_value: float, norm_type: float = 2.0, *, error_if_nonfinite: bool = False
) -> Tensor:
    """Clamp every gradient entry into ``[-clip_value, clip_value]`` in place (as
    ``torch.nn.utils.clip_grad_value_``), and return the global ``norm_type``-norm *before* clamping as
    a 0-dim tensor — so value clipping can be logged like norm clipping. Unlike norm clipping this
    changes the gradient's direction. nan entries stay nan (clamp keeps them), ±inf become ±clip_value.
    """
    if not clip_value > 0:
        raise ValueError(f"rnnkit.clip.clip_grad_value: clip_value must be > 0, got {clip_value!r}")
    named = [(n, p) for n, p in _named(parameters) if p.grad is not None]
    total = grad_norm(named, norm_type, error_if_nonfinite=error_if_nonfinite)
    for _, p in named:
        p.grad.clamp_(min=-clip_value, max=clip_value)
    return total


@dataclass
class ClipStats:
    """Counts how often and how hard gradient clipping fired, for a trainer's log.

    ``record(norm)`` takes a norm before clipping (tensor or float); ``clip(parameters)`` clips by
    global norm with this object's ``max_norm``/``norm_type``, records, and returns that norm.
    A step counts as *clipped* when norm > max_norm; its *ratio* norm / max_norm says how hard
    (2.0 = the step was halved). Non-finite norms are counted apart and left out of the means.
    ``summary()`` gives the numbers since the last ``reset()``.
    """

    max_norm: float
    norm_type: float = 2.0
    steps: int = 0
    clipped: int = 0
    nonfinite: int = 0
    norm_sum: float = 0.0
    norm_max: float = 0.0
    ratio_sum_clipped: float = 0.0
    ratio_max: float = 0.0
    last_norm: float = float("nan")

    def __post_init__(self) -> None:
        if not self.max_norm > 0:
            raise ValueError(f"rnnkit.clip.ClipStats: max_norm must be > 0, got {self.max_norm!r}")

    def record(self, norm: Tensor | float) -> float:
        """Add one step's pre-clipping norm; returns it as a float."""
        value = float(norm)
        self.steps += 1
        self.last_norm = value
        if not math.isfinite(value):
            self.nonfinite += 1
            return value
        self.norm_sum += value
        self.norm_max = max(self.norm_max, value)
        if value > self.max_norm:
            ratio = value / self.max_norm
            self.clipped += 1
            self.ratio_sum_clipped += ratio
            self.ratio_max = max(self.ratio_max, ratio)
        return value

    def clip(self, parameters: Parameters, *, error_if_nonfinite: bool = False) -> Tensor:
        """``clip_grad_norm(parameters, self.max_norm, self.norm_type)`` and record the result."""
        norm = clip_grad_norm(parameters, self.max_norm, self.norm_type, error_if_nonfinite=error_if_nonfinite)
        self.record(norm)
        return norm

    @property
    def clip_rate(self) -> float:
        """Fraction of recorded steps that were clipped (0 with no steps)."""
        return self.clipped / self.steps if self.steps else 0.0

    def summary(self) -> dict[str, float | int]:
        finite = self.steps - self.nonfinite
        return {
            "steps": self.steps,
            "clipped": self.clipped,
            "clip_rate": self.clip_rate,
            "nonfinite": self.nonfinite,
            "mean_norm": self.norm_sum / finite if finite else float("nan"),
            "max_norm_seen": self.norm_max,
            "mean_ratio_when_clipped": self.ratio_sum_clipped / self.clipped if self.clipped else 1.0,
            "max_ratio": max(self.ratio_max, 1.0) if self.clipped else 1.0,
            "last_norm": self.last_norm,
        }

    def reset(self) -> None:
        """Zero the counters (keeps ``max_norm`` and ``norm_type``), e.g. after each log line."""
        self.steps = self.clipped = self.nonfinite = 0
        self.norm_sum = self.norm_max = self.ratio_sum_clipped = self.ratio_max = 0.0
        self.last_norm = float("nan")

    def __str__(self) -> str:
        s = self.summary()
        return (f"clipped {s['clipped']}/{s['steps']} steps ({100 * s['clip_rate']:.0f}%), "
                f"mean norm {s['mean_norm']:.3g}, max {s['max_norm_seen']:.3g}"
                + (f", ×{s['mean_ratio_when_clipped']:.2f} when clipped" if s["clipped"] else "")
                + (f", {s['nonfinite']} non-finite" if s["nonfinite"] else ""))


__all__ = ["grad_norm", "clip_grad_norm", "clip_grad_value", "ClipStats", "EPS"]
