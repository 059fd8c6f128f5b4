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

Options (rnnkit's, beyond torch):

- ``recurrent_mask`` m (variational recurrent dropout, Gal & Ghahramani 2016): h_{t-1} enters the
  gates as m ∗ h_{t-1}.
- ``ln`` (layer-normalised LSTM, Ba, Kiros & Hinton 2016): the input and recurrent parts of the
  gate pre-activations are normalised separately, and the cell state before its tanh::

      [a_i, a_f, a_g, a_o] = LN(W_ih x_t; γ_x, β_x) + LN(W_hh h_{t-1}; γ_h, β_h) + b
      h_t = o_t ∗ tanh(LN(C_t; γ_C, β_C))
"""
from __future__ import annotations

import torch
from torch import Tensor

from .norm import LayerNormParams, ln


def lstm_cell(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    *,
    recurrent_mask: Tensor | None = None,
    norm: LayerNormParams | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step.

    Shapes: ``x`` (B, I); ``state = (h, C)`` with h (B, P or H) and C (B, H);
    ``w_ih`` (4H, I); ``w_hh`` (4H, P or H); biases (4H,); ``w_hr`` (P, H) or None;
    ``recurrent_mask`` like h; ``norm`` the layer-norm gains and biases (see ``norm.py``).
    Returns the new ``(h_t, C_t)``.
    """
    h_prev, C_prev = state
    h_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask
    if norm is None:
        pre = x @ w_ih.T + h_in @ w_hh.T  # (B, 4H): all four gates' pre-activations at once
    else:
        pre = ln(x @ w_ih.T, norm.ih_w, norm.ih_b) + ln(h_in @ w_hh.T, norm.hh_w, norm.hh_b)
    if b_ih is not None:
        pre = pre + b_ih + b_hh
    a_i, a_f, a_g, a_o = pre.chunk(4, dim=1)
    i = torch.sigmoid(a_i)
    f = torch.sigmoid(a_f)
    C_tilde = torch.tanh(a_g)
    o = torch.sigmoid(a_o)
    C = f * C_prev + i * C_tilde
    h = o * torch.tanh(C if norm is None else ln(C, norm.c_w, norm.c_b))
    if w_hr is not None:
        h = h @ w_hr.T  # (B, P)
    return h, C
