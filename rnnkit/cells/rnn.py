"""The vanilla (Elman) RNN cell, one time step::

    h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   φ = tanh or ReLU

With tanh, gradients shrink through every step where |h| is near 1 and through W_hh's small
singular values — the vanishing-gradient problem. ReLU with an identity W_hh is the IRNN recipe
(Le, Jaitly & Hinton 2015). Shapes as in torch: ``weight_ih`` (H, I), ``weight_hh`` (H, H).
"""
from __future__ import annotations

import torch
from torch import Tensor

NONLINEARITIES = ("tanh", "relu")


def rnn_cell(
    x: Tensor,
    h_prev: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
    *,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """One RNN step. Shapes: ``x`` (B, I), ``h_prev`` (B, H). Returns ``h_t`` (B, H).
    ``recurrent_mask`` (B, H) multiplies h_{t-1} (variational recurrent dropout)."""
    h_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask
    a = x @ w_ih.T + h_in @ w_hh.T
    if b_ih is not None:
        a = a + b_ih + b_hh
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)
