"""Fused vanilla RNN (tanh or ReLU): forward recurrence and hand-written BPTT.

Forward, per step: ``Y_t = φ(XW_t + h_{t-1} W_hhᵀ)`` computed in place in the buffer that already
holds the input projection. Backward: φ' depends only on the outputs (1 − h² or [h > 0]), so it is
computed for all steps first and the loop is::

    dA_t = (dh_carry + dY_t) ∗ φ'_t;   dh_carry = dA_t W_hh
"""
from __future__ import annotations

import torch
from torch import Tensor

from .layout import Layout


class RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, w_ih, w_hh, bias, layout: Layout, relu: bool):
        # X (N, I) packed; h0 (B, H) sorted; w_ih (H, I); w_hh (H, H); bias (H,) = b_ih + b_hh
        Y = torch.addmm(bias, X, w_ih.t()) if bias is not None else X @ w_ih.t()  # (N, H)
        w_hhT = w_hh.t()
        h_prev = h0
        for s, b in layout.steps:
            h = Y[s : s + b].addmm_(h_prev[:b], w_hhT)
            h_prev = h.relu_() if relu else h.tanh_()
        ctx.layout, ctx.relu, ctx.has_bias = layout, relu, bias is not None
        ctx.save_for_backward(X, h0, w_ih, w_hh, Y)
        return Y, layout.final(Y)

    @staticmethod
    def backward(ctx, dY, dh_n):
        X, h0, w_ih, w_hh, Y = ctx.saved_tensors
        layout: Layout = ctx.layout
        dY = torch.zeros_like(Y) if dY is None else dY.contiguous()
        dh_carry = torch.zeros_like(h0) if dh_n is None else dh_n.clone()
        D = (Y > 0).to(Y.dtype) if ctx.relu else 1 - Y * Y  # φ'(a_t), all steps at once
        dA = torch.empty_like(Y)
        for s, b in reversed(layout.steps):
            da = torch.add(dh_carry[:b], dY[s : s + b], out=dA[s : s + b]).mul_(D[s : s + b])
            torch.mm(da, w_hh, out=dh_carry[:b])
        needs = ctx.needs_input_grad
        dX = dA @ w_ih if needs[0] else None
        dw_ih = dA.t() @ X if needs[2] else None
        dw_hh = dA.t() @ layout.previous(h0, Y) if needs[3] else None
        dbias = dA.sum(0) if ctx.has_bias and needs[4] else None
        return dX, dh_carry, dw_ih, dw_hh, dbias, None, None


def rnn_layer(X: Tensor, h0: Tensor, w, layout: Layout, relu: bool):
    bias = None if w.b_ih is None else w.b_ih + w.b_hh
    return RNNFunction.apply(X, h0, w.w_ih, w.w_hh, bias, layout, relu)
