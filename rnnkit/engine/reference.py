"""The reference engine: a plain time loop over the cells of ``rnnkit.cells``, differentiated by autograd.

It is the readable path — the one to step through while learning — and the oracle the fused engine is
tested against. Variable lengths work by masking: once a sequence has ended its state stays frozen
and its outputs are zero, exactly what ``torch.nn`` computes for a ``PackedSequence``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells import gru_cell, lstm_cell, rnn_cell
from .types import LayerWeights, State


def _step(mode: str, x_t: Tensor, state: State, w: LayerWeights) -> State:
    if mode == "lstm":
        return lstm_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr)
    if mode == "gru":
        return gru_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh)
    return rnn_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, nonlinearity=mode[4:])


def run_layer(
    mode: str,
    x: Tensor,
    state: State,
    weights: LayerWeights,
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, State]:
    """Run one layer in one direction over a padded, time-major batch.

    ``x`` (T, B, I); ``state`` h0 (B, H) — or ``(h0, c0)`` for LSTM; ``lengths`` (B,) or None for
    all T; ``reverse`` runs each sequence from its last valid step back to its first.
    Returns ``y`` (T, B, H_out), zero past each length, and the final state (the state after each
    sequence's own last step).
    """
    T = x.shape[0]
    ys: list[Tensor] = [x.new_empty(0)] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        new = _step(mode, x[t], state, weights)
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
