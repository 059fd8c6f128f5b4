"""The reference engine: a plain time loop over the cells of ``rnnkit.cells``, differentiated by autograd.

It is the readable path — the one to step through while learning — and the oracle the fused engine is
tested against. Variable lengths work by masking: once a sequence has ended its state stays frozen
and its outputs are zero, exactly what ``torch.nn`` computes for a ``PackedSequence``.

Zoneout (Krueger et al. 2017) wraps the cell: each unit keeps its previous value with probability p,
``h_t = m ∗ h_{t-1} + (1 − m) ∗ h̃_t`` and likewise for the LSTM cell state; as in the paper, the LSTM's
h̃_t = o_t ∗ tanh(C̃_t) uses the cell's own new C̃_t, before C is zoned out.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells import LayerNormParams, gru_cell, lstm_cell, rnn_cell
from .types import LayerWeights, Noise, State


def _step(mode: str, x_t: Tensor, state: State, w: LayerWeights, mask: Tensor | None) -> State:
    norm = LayerNormParams(*w[5:]) if w.layer_norm else None
    if mode == "lstm":
        return lstm_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr, recurrent_mask=mask, norm=norm)
    if mode == "gru":
        return gru_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, recurrent_mask=mask, norm=norm)
    return rnn_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, nonlinearity=mode[4:], recurrent_mask=mask)


def _zone(keep, t: int, old: Tensor, new: Tensor) -> Tensor:
    """Zoneout: keep the old value where ``keep`` (a 0/1 draw, or the probability in eval) says so."""
    if keep is None:
        return new
    m = keep[t] if isinstance(keep, Tensor) else keep
    return m * old + (1 - m) * new


def run_layer(
    mode: str,
    x: Tensor,
    state: State,
    weights: LayerWeights,
    lengths: Tensor | None = None,
    reverse: bool = False,
    noise: Noise | None = None,
) -> tuple[Tensor, State]:
    """Run one layer in one direction over a padded, time-major batch.

    ``x`` (T, B, I); ``state`` h0 (B, H) — or ``(h0, c0)`` for LSTM; ``lengths`` (B,) or None for
    all T; ``reverse`` runs each sequence from its last valid step back to its first; ``noise`` the
    dropout/zoneout masks (``types.Noise``). Returns ``y`` (T, B, H_out), zero past each length, and
    the final state (the state after each sequence's own last step).
    """
    noise = noise or Noise()
    T = x.shape[0]
    ys: list[Tensor] = [x.new_empty(0)] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        new = _step(mode, x[t], state, weights, noise.recurrent)
        if mode == "lstm":
            new = (_zone(noise.zone_h, t, state[0], new[0]), _zone(noise.zone_c, t, state[1], new[1]))
        else:
            new = _zone(noise.zone_h, t, state, new)
        h_new = new[0] if mode == "lstm" else new
        if lengths is not None:
            alive = (t < lengths).to(x.device).unsqueeze(1)  # (B, 1): is step t inside sequence b?
            if mode == "lstm":
                new = (torch.where(alive, new[0], state[0]), torch.where(alive, new[1], state[1]))
            else:
                new = torch.where(alive, new, state)
            h_new = torch.where(alive, h_new, torch.zeros_like(h_new))
        ys[t] = h_new
        state = new
    return torch.stack(ys), state
