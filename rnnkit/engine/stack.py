"""Stacking and bidirectionality over a per-layer engine (reference or fused), and the random masks.

Layer l reads the concatenated outputs of both directions of layer l − 1. Dropout, as in torch.nn, is
applied to the outputs of every layer but the last, in training only; ``Options.dropout_kind`` says
whether its mask is new at every step ("naive") or fixed per sequence ("locked", "variational").
All masks come from torch's global RNG, so ``torch.manual_seed`` reproduces a run, and they are drawn
here, before any engine runs, so every engine sees the same masks for the same seed.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .types import LayerWeights, Noise, Options, State


def _bernoulli_keep(shape, p: float, like: Tensor) -> Tensor:
    """A dropout mask: 1/(1 − p) with probability 1 − p, else 0 (all zeros at p = 1, as F.dropout)."""
    if p >= 1:
        return like.new_zeros(shape)
    return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


def draw_noise(opts: Options, T: int, B: int, h_size: int, c_size: int, training: bool, like: Tensor) -> Noise:
    """The masks of one layer-direction for one forward call."""
    mask = None
    if training and opts.recurrent_dropout > 0:
        mask = _bernoulli_keep((B, h_size), opts.recurrent_dropout, like)

    def zone(p: float, size: int):
        if p == 0:
            return None
        if not training:
            return p  # the expectation of the 0/1 draw
        return like.new_empty(T, B, size).uniform_().lt_(p)  # 1 with probability p; 2× faster than bernoulli_

    return Noise(mask, zone(opts.zoneout, h_size), zone(opts.zoneout_cell, c_size))


def drop_weights(w: LayerWeights, opts: Options, training: bool) -> LayerWeights:
    """Weight-drop (DropConnect on W_hh, Wan et al. 2013; AWD-LSTM): one mask per forward call."""
    if not training or opts.weight_drop == 0:
        return w
    return w._replace(w_hh=F.dropout(w.w_hh, opts.weight_drop, training=True))


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
    opts: Options = Options(),
    pair_fn: Callable | None = None,
) -> tuple[Tensor, State]:
    """``x`` (T, B, I); ``hx`` h0 (L·D, B, H_out) or ``(h0, c0)``. Returns ``y`` (T, B, D·H_out) and the
    final states stacked like ``hx``. ``pair_fn(mode, x, states, weights, lengths, noises)``, if given, may
    run both directions of a layer at once (returning ``y`` and the two final states) or return None."""
    D = 2 if bidirectional else 1
    lstm = mode == "lstm"
    T, B = x.shape[0], x.shape[1]
    finals: list[State] = []
    inp = x
    for layer in range(num_layers):
        states, noises, ws = [], [], []
        for d in range(D):  # every mask of the layer drawn first, in the order a direction at a time would
            k = layer * D + d
            state = (hx[0][k], hx[1][k]) if lstm else hx[k]
            h_size = state[0].shape[-1] if lstm else state.shape[-1]
            c_size = state[1].shape[-1] if lstm else 0
            states.append(state)
            noises.append(draw_noise(opts, T, B, h_size, c_size, training, x))
            ws.append(drop_weights(weights[k], opts, training))
        both = pair_fn(mode, inp, states, ws, lengths, noises) if D == 2 and pair_fn is not None else None
        if both is not None:
            inp, pair_finals = both
            finals.extend(pair_finals)
        else:
            ys = []
            for d in range(D):
                y, s = layer_fn(mode, inp, states[d], ws[d], lengths, reverse=d == 1, noise=noises[d])
                ys.append(y)
                finals.append(s)
            inp = ys[0] if D == 1 else torch.cat(ys, dim=2)
        if dropout > 0 and training and layer < num_layers - 1:
            if opts.dropout_kind == "naive":
                inp = F.dropout(inp, dropout, training=True)
            else:  # one mask per sequence, the same at every step
                inp = inp * _bernoulli_keep((1, B, inp.shape[2]), dropout, inp)
    if lstm:
        return inp, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
    return inp, torch.stack(finals)
