"""Gradient health during training: the global norm, how often clipping fired, and warnings when
gradients explode or vanish — small enough for a trainer to call every step.

A trainer's loop, with or without clipping::

    monitor = GradientMonitor(MonitorConfig(max_norm=1.0))      # max_norm=None: observe only
    for step, batch in enumerate(data, 1):
        loss = ...
        monitor.check_loss(loss, step)          # raises NonFiniteLossError on nan/inf
        loss.backward()
        norm = monitor.observe(model.parameters(), step)   # clips when max_norm is set
        opt.step()
        if step % 100 == 0:
            print(monitor.log_line()); monitor.reset_window()
        if step % 1000 == 0:                     # occasional, costs one stepped forward/backward
            monitor.probe(model.rnn, embedded_batch, step=step)   # loss on the last step (last_step_loss)

Warnings are ``GradientWarning`` (a ``RuntimeWarning``) by default; pass ``on_event`` to route them
to a logger instead. Every event is also kept in ``monitor.events``.

- *exploding*: the pre-clipping global norm is nan/inf (at once), or above ``explode_threshold`` for
  ``explode_patience`` consecutive steps (one warning per streak);
- *vanishing*: a gradient-flow probe finds ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ below ``vanish_ratio``: the first
  step of the sequence receives almost no learning signal from the loss at its end.

``rnnkit.train.Trainer`` runs one of these (``TrainConfig``'s ``explode_threshold``,
``explode_patience``, ``vanish_ratio``, ``probe_every``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..clip import ClipStats, Parameters, clip_grad_norm, grad_norm
from . import stepping
from .gradients import GradientFlow, gradient_flow


def last_step_loss(layer: nn.Module, seed: int = 0) -> Callable[[Tensor], Tensor]:
    """A probe loss on the last step alone: L = Σ_b ⟨v, h_T[b]⟩ with a fixed random unit vector v.

    Then ∂L/∂h_T = v in every row and ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = ‖(∂h_T/∂h_1)ᵀ v‖ (summed over the batch):
    how much of a signal at the end of the sequence reaches its start, whatever the task. A task's own
    loss on every step (a language model's) would hide vanishing: h_1's own loss term keeps ‖∂L/∂h_1‖
    large however little flows back from step T. A bidirectional layer's reverse half is read at
    t = 1, its last step. v comes from a generator seeded with ``seed``, so the global RNG (and with
    it an exactly resumable training run) is untouched. The returned function takes the layer's
    output in the layer's own layout, (T, B, D·H) or (B, T, D·H) with ``batch_first``.
    """
    D = 2 if getattr(layer, "bidirectional", False) else 1
    H = getattr(layer, "proj_size", 0) or layer.hidden_size
    v = torch.randn(D, H, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)

    def loss(output: Tensor) -> Tensor:
        out = output.transpose(0, 1) if layer.batch_first else output  # (T, B, D·H)
        w = v.to(out)
        total = (out[-1, :, :H] * w[0]).sum()
        if D == 2:
            total = total + (out[0, :, H:] * w[1]).sum()
        return total

    return loss


class GradientWarning(RuntimeWarning):
    """Gradients exploded or vanished (see ``GradientMonitor``)."""


class NonFiniteLossError(FloatingPointError):
    """The loss became nan or inf; training should stop and keep its last good checkpoint."""


@dataclass
class MonitorConfig:
    """``explode_threshold``: a global gradient norm above this is suspicious (1e3: far above the
    usual clipping thresholds of 0.25–5, far below an overflow); ``explode_patience``: consecutive
    such steps before a warning (one spike is common and harmless when clipping); ``vanish_ratio``:
    ‖∂L/∂h_1‖/‖∂L/∂h_T‖ below which a probe warns (1e-6: six orders of magnitude lost across the
    sequence); ``max_norm``: clip to this global norm in ``observe`` (None = observe only)."""

    explode_threshold: float = 1e3
    explode_patience: int = 3
    vanish_ratio: float = 1e-6
    max_norm: float | None = None
    norm_type: float = 2.0

    def __post_init__(self) -> None:
        for name in ("explode_threshold", "vanish_ratio"):
            if not getattr(self, name) > 0:
                raise ValueError(f"rnnkit.diagnostics.MonitorConfig: {name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.explode_patience, int) or self.explode_patience < 1:
            raise ValueError(f"rnnkit.diagnostics.MonitorConfig: explode_patience must be an int >= 1, "
                             f"got {self.explode_patience!r}")
        if self.max_norm is not None and not self.max_norm > 0:
            raise ValueError(f"rnnkit.diagnostics.MonitorConfig: max_norm must be > 0 or None, got {self.max_norm!r}")


@dataclass
class GradientEvent:
    """One warning: ``kind`` is "nonfinite", "exploding" or "vanishing"; ``value`` the norm or ratio."""

    step: int
    kind: str
    value: float
    message: str


def _warn(event: GradientEvent) -> None:
    warnings.warn(event.message, GradientWarning, stacklevel=3)


def _remedy(layer_mode: str | None) -> str:
    """What to try against vanishing gradients, for the kind of layer measured."""
    if layer_mode in ("lstm", "gru"):
        return ("The layer is already gated: try a forget-gate bias of 1 (LSTM), orthogonal recurrent init, "
                "or shorter BPTT chunks.")
    return ("Consider an LSTM/GRU, identity/orthogonal recurrent init, a forget-gate bias of 1, "
            "or shorter BPTT chunks.")


@dataclass
class GradientMonitor:
    """Tracks the global gradient norm and clipping, and raises events (see the module docstring)."""

    config: MonitorConfig = field(default_factory=MonitorConfig)
    on_event: Callable[[GradientEvent], None] = _warn
    events: list[GradientEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        # ClipStats needs a threshold; without clipping, "clipped" would read as "above explode_threshold".
        self.stats = ClipStats(max_norm=self.config.max_norm or self.config.explode_threshold,
                               norm_type=self.config.norm_type)
        self.step = 0
        self.explode_streak = 0  # consecutive steps above explode_threshold (a checkpoint keeps it)
        self.last_flow: GradientFlow | None = None

    # -- every step ------------------------------------------------------------------------------
    def observe(self, parameters: Parameters, step: int | None = None) -> float:
        """Measure the global gradient norm (and clip it to ``max_norm`` if set); record it; raise
        events. Call after ``backward()`` and before ``optimizer.step()``. Returns the norm before
        clipping as a float."""
        if self.config.max_norm is not None:
            norm = clip_grad_norm(parameters, self.config.max_norm, self.config.norm_type)
        else:
            norm = grad_norm(parameters, self.config.norm_type)
        return self.record(norm, step)

    def record(self, norm: Tensor | float, step: int | None = None) -> float:
        """Record a norm measured elsewhere (e.g. the return value of ``rnnkit.clip.clip_grad_norm``)."""
        self.step = step if step is not None else self.step + 1
        value = self.stats.record(norm)
        cfg = self.config
        if not math.isfinite(value):
            self.explode_streak = 0
            self._emit("nonfinite", value,
                       f"step {self.step}: the gradient norm is {value} — a nan/inf gradient. The optimizer step "
                       f"would corrupt the weights: lower the learning rate, clip (max_norm), or check the loss.")
        elif value > cfg.explode_threshold:
            self.explode_streak += 1
            if self.explode_streak == cfg.explode_patience:
                self._emit("exploding", value,
                           f"step {self.step}: gradients exploding — global norm above {cfg.explode_threshold:g} "
                           f"for {cfg.explode_patience} consecutive steps (now {value:.3g}). Clip the gradient norm "
                           f"(e.g. max_norm=1.0) or lower the learning rate.")
        else:
            self.explode_streak = 0
        return value

    def check_loss(self, loss: Tensor | float, step: int | None = None) -> None:
        """Raise :class:`NonFiniteLossError` if the loss is nan or inf (before ``backward()``)."""
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if not math.isfinite(value):
            at = f"step {step}" if step is not None else f"after step {self.step}"
            raise NonFiniteLossError(
                f"rnnkit: the loss is {value} at {at}. Training stopped; the last good checkpoint is the one to "
                f"resume from. Usual causes: a learning rate too high, no gradient clipping, log(0) in the loss."
            )

    # -- occasionally ----------------------------------------------------------------------------
    def check_flow(self, flow: GradientFlow | Sequence[float], step: int | None = None,
                   layer_mode: str | None = None) -> float:
        """Check a gradient-flow measurement (or a sequence of ‖∂L/∂h_t‖ in processing order) for
        vanishing; returns the first/last ratio. ``layer_mode`` ("lstm", "gru", "rnn_tanh", …) tunes the advice."""
        if isinstance(flow, GradientFlow):
            self.last_flow = flow
            ratio = flow.ratio_first_last()
        else:
            norms = [float(v) for v in flow]
            ratio = norms[0] / norms[-1] if norms[-1] > 0 else math.nan
        if ratio < self.config.vanish_ratio:
            at = step if step is not None else self.step
            message = (f"step {at}: gradients vanishing through time — ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = {ratio:.2g} < "
                       f"{self.config.vanish_ratio:g}; the start of the sequence barely learns. {_remedy(layer_mode)}")
            self._emit("vanishing", ratio, message, at)
        return ratio

    def probe(self, layer: nn.Module, x: Tensor, loss_fn: Callable[[Tensor], Tensor] | None = None,
              step: int | None = None, **kwargs) -> GradientFlow:
        """Measure the gradient flow of ``layer`` on ``x`` (see :func:`gradient_flow`) and check it.
        ``loss_fn`` None: :func:`last_step_loss`, which works for any task."""
        flow = gradient_flow(layer, x, loss_fn or last_step_loss(layer), **kwargs)
        self.check_flow(flow, step, stepping.layer_mode(layer))  # (torch.nn spells the mode in capitals)
        return flow

    # -- reporting -------------------------------------------------------------------------------
    def _emit(self, kind: str, value: float, message: str, at: int | None = None) -> None:
        event = GradientEvent(self.step if at is None else at, kind, value, message)
        self.events.append(event)
        self.on_event(event)

    def summary(self) -> dict[str, float | int]:
        """Norm statistics since the last ``reset_window()`` plus event counts since the start."""
        s = self.stats.summary()
        out = {"step": self.step, "grad_norm": s["last_norm"], "grad_norm_mean": s["mean_norm"],
               "grad_norm_max": s["max_norm_seen"], "nonfinite_steps": s["nonfinite"]}
        if self.config.max_norm is not None:
            out["clip_rate"] = s["clip_rate"]
            out["clip_ratio_mean"] = s["mean_ratio_when_clipped"]
        for kind in ("nonfinite", "exploding", "vanishing"):
            out[f"events_{kind}"] = sum(e.kind == kind for e in self.events)
        if self.last_flow is not None:
            out["flow_ratio_first_last"] = self.last_flow.ratio_first_last()
        return out

    def log_line(self) -> str:
        s = self.summary()
        parts = [f"grad norm {s['grad_norm']:.3g} (mean {s['grad_norm_mean']:.3g}, max {s['grad_norm_max']:.3g})"]
        if "clip_rate" in s:
            parts.append(f"clipped {100 * s['clip_rate']:.0f}% (×{s['clip_ratio_mean']:.2f})")
        if s["nonfinite_steps"]:
            parts.append(f"{s['nonfinite_steps']} non-finite")
        if "flow_ratio_first_last" in s:
            parts.append(f"∂L/∂h_1:∂L/∂h_T {s['flow_ratio_first_last']:.2g}")
        return ", ".join(parts)

    def reset_window(self) -> None:
        """Start a new logging window (norm and clip statistics); events and the step count stay."""
        self.stats.reset()
