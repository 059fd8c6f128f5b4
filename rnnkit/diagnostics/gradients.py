"""Gradient flow through time: ‖∂L/∂h_t‖ for every step and layer, exactly, and how fast it decays.

Backpropagation through time multiplies the gradient by one Jacobian per step::

    ∂L/∂h_t = ∂L/∂y_t + (∂h_{t+1}/∂h_t)ᵀ ∂L/∂h_{t+1}

For a tanh RNN, ∂h_{t+1}/∂h_t = diag(1 − h_{t+1}²) W_hh: when its norm stays below 1 the gradient from a
loss at step T reaches step t shrunk geometrically, ~ρ^(T−t) — the vanishing-gradient problem
(Hochreiter 1991; Bengio, Simard & Frasconi 1994). The LSTM's cell path multiplies by the forget gate
instead (∂C_{t+1}/∂C_t ⊇ diag(f_{t+1})), the GRU's by the update gate z, and the IRNN's by W_hh = I
where the ReLU is active: each can keep the factor near 1.

:func:`gradient_flow` measures it. It reruns the layer's own weights through ``rnnkit.cells`` keeping
every h_t (``stepping.py``), evaluates ``loss_fn`` on the stepped output, and asks autograd for the
*total* derivative of the loss with respect to each h_t (through every later step and the output),
C_t (LSTM) and x_t. Norms are Frobenius norms over the batch: ‖∂L/∂h_t‖ = sqrt(Σ_b Σ_j (∂L/∂h_t[b, j])²).
Run the layer in float64 for long sequences: a tanh RNN's gradient falls below float32's range
(1e-38) within a few hundred steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from .stepping import check_against_layer, check_input, step_layer


@dataclass
class GradientFlow:
    """Per-step gradient norms of one layer (stack) on one batch.

    ``h`` (L·D, T): ‖∂L/∂h_t‖ for every layer-direction ``names[k]`` and step t (time order);
    ``c`` (L·D, T) the same for the LSTM cell state, else None; ``x`` (T,): ‖∂L/∂x_t‖;
    ``reverse[k]``: whether layer-direction k runs backward in time; ``loss``: the loss value.
    """

    mode: str
    names: list[str]
    h: Tensor
    c: Tensor | None
    x: Tensor
    loss: float
    reverse: list[bool] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.h.shape[1]

    def _processing_order(self, norms: Tensor, k: int) -> Tensor:
        return norms.flip(0) if self.reverse and self.reverse[k] else norms

    def headline(self) -> int:
        """The layer-direction the one-number summaries describe by default: the top layer's forward
        direction (a bidirectional top layer's reverse one sees a last-step loss only at its first step)."""
        forward = [k for k in range(len(self.names)) if not (self.reverse and self.reverse[k])]
        return forward[-1] if forward else len(self.names) - 1

    def _norms(self, k: int, which: str, owner: str) -> Tensor:
        """Layer-direction ``k``'s norms of ``which`` ("h", or "c": the LSTM's cell state), in its processing
        order."""
        if which not in ("h", "c"):
            raise ValueError(f"GradientFlow.{owner}: which must be 'h' or 'c', got {which!r}")
        if which == "c" and self.c is None:
            raise ValueError(f"GradientFlow.{owner}: which='c' needs an LSTM's cell state; a {self.mode} layer "
                             f"has none")
        return self._processing_order((self.h if which == "h" else self.c)[k], k)

    def decay_per_step(self, k: int | None = None, which: str = "h") -> float:
        """Orders of magnitude the gradient loses per step back in time: minus the least-squares slope
        of log10 ‖∂L/∂h_t‖ against steps before the end, in layer-direction ``k``'s own processing
        order. 0 = perfect flow, 0.5 = a factor √10 lost per step, negative = growing (exploding).
        Steps whose gradient is exactly 0 (underflow, dead ReLUs) are left out of the fit. ``k``: default
        ``headline()``."""
        k = self.headline() if k is None else k
        norms = self._norms(k, which, "decay_per_step").double()
        t = torch.arange(len(norms), dtype=torch.float64)
        keep = norms > 0
        if int(keep.sum()) < 2:
            return math.inf
        y, t = norms[keep].log10(), t[keep]
        slope = ((t - t.mean()) * (y - y.mean())).sum() / ((t - t.mean()) ** 2).sum()
        return float(slope)  # norm grows toward the loss at the end, so a positive slope means vanishing

    def ratio_first_last(self, k: int | None = None, which: str = "h") -> float:
        """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ in layer-direction ``k``'s processing order (1 = no decay; the
        monitor's vanishing test). ``k``: default ``headline()``."""
        k = self.headline() if k is None else k
        norms = self._norms(k, which, "ratio_first_last")
        last = float(norms[-1])
        return float(norms[0]) / last if last > 0 else math.nan

    def summary(self) -> dict[str, float]:
        """The headline numbers of ``headline()``'s layer-direction, for tables and logs."""
        k = self.headline()
        norms = self._processing_order(self.h[k], k)
        return {
            "decay_log10_per_step": self.decay_per_step(k),
            "ratio_first_last": self.ratio_first_last(k),
            "grad_h_first": float(norms[0]),
            "grad_h_last": float(norms[-1]),
            "loss": self.loss,
        }


def gradient_flow(
    layer: nn.Module,
    x: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    hx=None,
    *,
    lengths=None,
    check: bool = True,
) -> GradientFlow:
    """Exact per-step gradient norms of ``loss_fn(output)`` for an RNN/LSTM/GRU layer.

    ``layer``: an ``rnnkit`` (or ``torch.nn``) recurrent layer — for a model, pass its recurrent
    module and put the rest (decoder, loss) in ``loss_fn``; ``x``: the layer's input, (T, B, I) or
    (B, T, I) with ``batch_first`` — for a model, its embedded input, so ∂L/∂x_t is per token;
    ``loss_fn``: maps the layer's output, in the layer's own layout, to a scalar. ``lengths`` (B,): the
    real steps of each row of a padded batch (an rnnkit layer's ``lengths=``); the norms at step t then
    cover the rows that are alive there. ``check=True`` verifies that the stepped output equals
    ``layer(x)`` (in eval mode) and raises if not. Nothing is written into ``.grad`` of any parameter.
    """
    check_input("gradient_flow", layer, x, lengths)
    x = x.detach().requires_grad_(True)
    run = step_layer(layer, x, hx, lengths)
    if check:
        check_against_layer(layer, x.detach(), run, hx, lengths)
    output = run.output.transpose(0, 1) if layer.batch_first else run.output
    loss = loss_fn(output)
    if loss.dim() != 0:
        raise ValueError(f"rnnkit.diagnostics.gradient_flow: loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    K, T = len(run.names), len(run.h[0])
    cells = run.c if run.c_cell is None else run.c_cell  # (with lengths: C_t as made, which h_t reads)
    states = [h for hs in run.h for h in hs] + ([c for cs in cells for c in cs] if run.c else [])
    grads = torch.autograd.grad(loss, states + [x], allow_unused=True)

    def norm(g: Tensor | None, t: int) -> float:  # (over the rows alive at step t)
        if g is None:
            return 0.0
        return float(torch.linalg.vector_norm(g.double() if run.alive is None else g.double()[run.alive[t]]))

    h = torch.tensor([norm(g, i % T) for i, g in enumerate(grads[: K * T])], dtype=torch.float64).view(K, T)
    c = (torch.tensor([norm(g, i % T) for i, g in enumerate(grads[K * T: 2 * K * T])], dtype=torch.float64)
         .view(K, T) if run.c else None)
    gx = grads[-1]
    gx = gx.transpose(0, 1) if layer.batch_first else gx  # (T, B, I)
    xn = torch.linalg.vector_norm(gx.double().flatten(1), dim=1) if gx is not None else torch.zeros(T)
    return GradientFlow(run.mode, run.names, h, c, xn, float(loss.detach()), run.reverse)
