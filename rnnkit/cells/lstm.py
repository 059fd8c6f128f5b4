"""The LSTM cell, one time step (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

With ``[h_{t-1}, x_t]`` the previous hidden state stacked on the input and σ the logistic sigmoid::

    i_t  = σ(W_i·[h_{t-1}, x_t] + b_i)        input gate
    f_t  = σ(W_f·[h_{t-1}, x_t] + b_f)        forget gate
    C̃_t  = tanh(W_C·[h_{t-1}, x_t] + b_C)     candidate cell state (torch calls it g)
    o_t  = σ(W_o·[h_{t-1}, x_t] + b_o)        output gate
    C_t  = f_t ∗ C_{t-1} + i_t ∗ C̃_t
    h_t  = o_t ∗ tanh(C_t)                    (with projection: h_t = W_hr·(o_t ∗ tanh(C_t)))

Each W is split, as in torch, into an input part and a recurrent part, stacked gate by gate in
torch's order ``i, f, g, o``: ``weight_ih = [W_ii|W_if|W_ig|W_io]`` of shape (4H, I) and
``weight_hh`` of shape (4H, H) — or (4H, P) with a projection of size P — so weights move
between ``torch.nn.LSTM`` and rnnkit untouched. Torch keeps two bias vectors (``b_ih`` and ``b_hh``,
for cuDNN compatibility); only their sum matters.
"""
from __future__ import annotations

import torch
from torch import Tensor


def lstm_cell(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step.

    Shapes: ``x`` (B, I); ``state = (h, C)`` with h (B, P or H) and C (B, H);
    ``w_ih`` (4H, I); ``w_hh`` (4H, P or H); biases (4H,); ``w_hr`` (P, H) or None.
    Returns the new ``(h_t, C_t)``.
    """
    h_prev, C_prev = state
    pre = x @ w_ih.T + h_prev @ w_hh.T  # (B, 4H): all four gates' pre-activations at once
    if b_ih is not None:
        pre = pre + b_ih + b_hh
    a_i, a_f, a_g, a_o = pre.chunk(4, dim=1)
    i = torch.sigmoid(a_i)
    f = torch.sigmoid(a_f)
    C_tilde = torch.tanh(a_g)
    o = torch.sigmoid(a_o)
    C = f * C_prev + i * C_tilde
    h = o * torch.tanh(C)
    if w_hr is not None:
        h = h @ w_hr.T  # (B, P)
    return h, C
