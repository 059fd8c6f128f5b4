"""Single-step kernel for generation: one step of a whole recurrent stack, weights packed once.

Generation feeds one token at a time to a batch of one (or a few beams), so the time goes to per-call
overhead and to reading the weights, not to arithmetic. Stepping ``torch.nn.LSTM`` with T = 1 pays
oneDNN's set-up on every call; stepping ``torch.nn.LSTMCell`` pays two matrix products and a dozen
small ops per layer. Here each layer is **one** matrix product of the input and the previous hidden
state side by side, ``[x_t, h_{t-1}]`` (B, I + H), with the weights packed once as ``[W_ih; W_hh]ᵀ``
(I + H, G·H) and the two biases summed, followed by as few element-wise calls as the cell allows.

Packed layouts, per layer (the letters of ``rnnkit/cells``)::

    RNN   W = [W_ih | W_hh]ᵀ                          a = [x, h] W + b;  h' = φ(a)
    LSTM  W = [W_ih | W_hh]ᵀ, gate columns i, f, o, g  (torch stores i, f, g, o; i, f, o side by side
          take one sigmoid call, g one tanh call)
          C' = f ∗ C + i ∗ g;  h' = o ∗ tanh(C')       (h' = h' W_hrᵀ with a projection)
    GRU   the reset gate multiplies W_hn h + b_hn alone, so the n columns come in two halves:
          W = [[W_ir W_iz W_in 0 ], [W_hr W_hz 0 W_hn]]ᵀ (I + H, 4H),  b = [b_ir+b_hr, b_iz+b_hz, b_in, b_hn]
          [r, z] = σ(a_rz);  n = tanh(a_nx + r ∗ a_nh);  h' = n + z ∗ (h − n) = (1 − z) ∗ n + z ∗ h

The packed copy is a snapshot: ``StepKernel.key`` records each source tensor's identity, storage and
``_version`` (bumped by every in-place update: optimiser steps, ``load_state_dict``), and
``current_kernel`` repacks when any of them changed. The kernel is for inference: it runs without
autograd and without dropout. Tested against ``rnnkit.cells`` and against whole-sequence layers.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .types import MODES, LayerWeights, State

__all__ = ["StepKernel", "current_kernel", "weights_key"]


class _Packed(NamedTuple):
    """One layer: ``w`` (I + H_in, G·H) packed weight, ``b`` (G·H,) bias (zeros without bias),
    ``w_hrT`` (H, P) projection or None."""

    w: Tensor
    b: Tensor
    w_hrT: Tensor | None


def weights_key(weights: Sequence[LayerWeights]) -> tuple:
    """What identifies one version of the weights: every tensor's id, storage address and version."""
    return tuple((id(t), t.data_ptr(), t._version) for lw in weights for t in lw if t is not None)


def _pack_layer(mode: str, w: LayerWeights) -> _Packed:
    G_H, I = w.w_ih.shape
    bias = w.b_ih + w.b_hh if w.b_ih is not None else w.w_ih.new_zeros(G_H)
    if mode == "lstm":
        H = G_H // 4
        order = torch.tensor([0, 1, 3, 2], device=w.w_ih.device)  # i, f, g, o → i, f, o, g

        def regate(t: Tensor) -> Tensor:
            return t.reshape(4, H, -1).index_select(0, order).reshape(4 * H, -1)

        packed = torch.cat([regate(w.w_ih), regate(w.w_hh)], dim=1)  # (4H, I + P)
        bias = regate(bias.unsqueeze(1)).squeeze(1)
    elif mode == "gru":
        H = G_H // 3
        P = w.w_hh.shape[1]
        packed = w.w_ih.new_zeros(4 * H, I + P)
        packed[: 3 * H, :I] = w.w_ih  # r, z, n_x from the input
        packed[: 2 * H, I:] = w.w_hh[: 2 * H]  # r, z from the state (summed with the input part)
        packed[3 * H :, I:] = w.w_hh[2 * H :]  # n_h kept apart: r multiplies it
        b_ih = w.b_ih if w.b_ih is not None else bias.new_zeros(3 * H)
        b_hh = w.b_hh if w.b_hh is not None else bias.new_zeros(3 * H)
        bias = torch.cat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :], b_hh[2 * H :]])
    elif mode in ("rnn_tanh", "rnn_relu"):
        packed = torch.cat([w.w_ih, w.w_hh], dim=1)
    else:
        raise ValueError(f"rnnkit.engine.step: unknown mode {mode!r}; expected one of {MODES}")
    w_hrT = w.w_hr.t().contiguous() if w.w_hr is not None else None
    return _Packed(packed.t().contiguous(), bias.contiguous(), w_hrT)


class StepKernel:
    """One step of a unidirectional stack with packed weights.

    ``StepKernel(mode, weights)``: ``mode`` in ``lstm | gru | rnn_tanh | rnn_relu``, ``weights`` one
    ``LayerWeights`` per layer (torch's layout, as ``RNNBase.layer_weights()`` returns them).
    ``kernel(x, state)``: ``x`` (B, I); ``state`` h (L, B, H) — ``(h, c)`` for LSTM — in torch's layout
    (any strides: a transposed (B, L, H) view works). Returns ``(y (B, H_out), new_state)`` with
    ``new_state`` shaped like ``state`` (contiguous) and ``y`` the top layer's new hidden state.
    """

    def __init__(self, mode: str, weights: Sequence[LayerWeights]) -> None:
        if mode not in MODES:
            raise ValueError(f"rnnkit.engine.StepKernel: unknown mode {mode!r}; expected one of {MODES}")
        if not weights:
            raise ValueError("rnnkit.engine.StepKernel: weights must hold at least one layer, got none")
        self.mode = mode
        self.key = weights_key(weights)
        self.num_layers = len(weights)
        self.input_size = weights[0].w_ih.shape[1]
        self.hidden_size = weights[0].w_hh.shape[0] // {"lstm": 4, "gru": 3}.get(mode, 1)
        with torch.no_grad():
            self.layers = [_pack_layer(mode, w) for w in weights]
        self._step = {"lstm": self._lstm, "gru": self._gru}.get(mode, self._rnn)
        self._relu = mode == "rnn_relu"

    @classmethod
    def for_layer(cls, rnn) -> "StepKernel":
        """Pack an ``rnnkit.RNN/LSTM/GRU`` layer (anything with ``mode``, ``bidirectional`` and
        ``layer_weights()``). A bidirectional layer cannot run one step at a time: its backward
        direction needs the whole sequence."""
        if rnn.bidirectional:
            raise ValueError(f"rnnkit.engine.StepKernel: cannot step a bidirectional {type(rnn).__name__} one "
                             "token at a time (the backward direction reads the future); got bidirectional=True")
        return cls(rnn.mode, rnn.layer_weights())

    def is_current(self, weights: Sequence[LayerWeights]) -> bool:
        return self.key == weights_key(weights)

    @torch.no_grad()
    def __call__(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self._step(x, state)

    # -- one step per cell kind; x (B, I) -------------------------------------------------------
    def _lstm(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, C = state  # (L, B, P), (L, B, H)
        H = self.hidden_size
        hs, Cs = [], []
        for layer, p in enumerate(self.layers):
            G = torch.addmm(p.b, torch.cat((x, h[layer]), 1), p.w)  # (B, 4H): i, f, o, g
            G[:, : 3 * H].sigmoid_()
            G[:, 3 * H :].tanh_()
            i, f, o, g = G.view(-1, 4, H).unbind(1)
            C_t = torch.addcmul(f * C[layer], i, g)
            x = o * torch.tanh(C_t)
            if p.w_hrT is not None:
                x = x @ p.w_hrT  # (B, P)
            hs.append(x)
            Cs.append(C_t)
        return x, (torch.stack(hs), torch.stack(Cs))

    def _gru(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        hs = []
        for layer, p in enumerate(self.layers):
            h_prev = h[layer]
            G = torch.addmm(p.b, torch.cat((x, h_prev), 1), p.w)  # (B, 4H): r, z, n_x, n_h
            r, z = G[:, : 2 * H].sigmoid_().chunk(2, 1)
            n = torch.addcmul(G[:, 2 * H : 3 * H], r, G[:, 3 * H :]).tanh_()
            x = torch.addcmul(n, z, h_prev - n)  # n + z ∗ (h − n)
            hs.append(x)
        return x, torch.stack(hs)

    def _rnn(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        hs = []
        for layer, p in enumerate(self.layers):
            a = torch.addmm(p.b, torch.cat((x, h[layer]), 1), p.w)
            x = a.relu_() if self._relu else a.tanh_()
            hs.append(x)
        return x, torch.stack(hs)


def current_kernel(kernel: StepKernel | None, rnn) -> StepKernel:
    """``kernel`` if it was packed from ``rnn``'s weights as they are now, else a freshly packed one.
    Costs a walk over the parameters (microseconds): call it once per generation, not per token."""
    if kernel is not None and kernel.is_current(rnn.layer_weights()):
        return kernel
    return StepKernel.for_layer(rnn)
