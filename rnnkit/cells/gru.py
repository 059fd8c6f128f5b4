"""The GRU cell, one time step (Cho et al. 2014), in torch's formulation.

With σ the logistic sigmoid and ∗ the element-wise product::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)            reset gate
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)            update gate
    n_t = tanh(W_in x_t + b_in + r_t ∗ (W_hn h_{t-1} + b_hn))  candidate state
    h_t = (1 − z_t) ∗ n_t + z_t ∗ h_{t-1}

The reset gate multiplies the *projected* previous state ``W_hn h_{t-1} + b_hn`` (torch and cuDNN do
this; Cho et al. apply r before the matrix product). z_t close to 1 keeps the old state, so
information can pass many steps unchanged. Weights are stacked in torch's order ``r, z, n``:
``weight_ih`` (3H, I) and ``weight_hh`` (3H, H), so they load into ``torch.nn.GRU`` untouched.

Options (rnnkit's): ``recurrent_mask`` m multiplies h_{t-1} where it enters the gates (W_h·(m ∗ h_{t-1}));
the interpolation h_t = (1 − z_t) ∗ n_t + z_t ∗ h_{t-1} keeps the unmasked state. ``norm`` layer-normalises
the input part W_i x_t and the recurrent part W_h h_{t-1} separately, each before its bias.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .norm import LayerNormParams, ln


def gru_cell(
    x: Tensor,
    h_prev: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    *,
    recurrent_mask: Tensor | None = None,
    norm: LayerNormParams | None = None,
) -> Tensor:
    """One GRU step. Shapes: ``x`` (B, I), ``h_prev`` (B, H), ``w_ih`` (3H, I), ``w_hh`` (3H, H),
    biases (3H,). Returns ``h_t`` (B, H)."""
    h_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask
    gi = x @ w_ih.T  # (B, 3H): input parts of r, z, n
    gh = h_in @ w_hh.T  # (B, 3H): recurrent parts
    if norm is not None:
        gi, gh = ln(gi, norm.ih_w, norm.ih_b), ln(gh, norm.hh_w, norm.hh_b)
    if b_ih is not None:
        gi = gi + b_ih
        gh = gh + b_hh
    gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
    gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(gi_r + gh_r)
    z = torch.sigmoid(gi_z + gh_z)
    n = torch.tanh(gi_n + r * gh_n)
    return (1 - z) * n + z * h_prev
