"""Stacking and bidirectionality over a per-layer engine (reference or fused).

Layer l reads the concatenated outputs of both directions of layer l − 1; dropout, as in torch.nn,
is applied to the outputs of every layer but the last, in training only.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .types import LayerWeights, State


def run_stack(
    layer_fn: Callable,
    mode: str,
    x: Tensor,
    hx: State,
    weights: Sequence[LayerWeights],
    lengths: Tensor | None,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
) -> tuple[Tensor, State]:
    """``x`` (T, B, I); ``hx`` h0 (L·D, B, H_out) or ``(h0, c0)``. Returns ``y`` (T, B, D·H_out) and the
    final states stacked like ``hx``."""
    D = 2 if bidirectional else 1
    lstm = mode == "lstm"
    finals: list[State] = []
    inp = x
    for layer in range(num_layers):
        ys = []
        for d in range(D):
            k = layer * D + d
            state = (hx[0][k], hx[1][k]) if lstm else hx[k]
            y, s = layer_fn(mode, inp, state, weights[k], lengths, reverse=d == 1)
            ys.append(y)
            finals.append(s)
        inp = ys[0] if D == 1 else torch.cat(ys, dim=2)
        if dropout > 0 and training and layer < num_layers - 1:
            inp = F.dropout(inp, dropout, training=True)
    if lstm:
        return inp, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
    return inp, torch.stack(finals)
