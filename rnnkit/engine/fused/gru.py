"""Fused GRU: forward recurrence and hand-written backpropagation through time.

Internal layout (``internal_weights``): torch's gate order ``r, z, n``, with the n rows of both weight
matrices and of b_in, b_hn scaled by 2 so that n = 2σ(2a) − 1 = tanh(a) costs a sigmoid. The r and z
parts of b_hh are folded into the input bias; b_hn stays on the recurrent side because r multiplies it.

Forward, per step over its b live rows (``GX`` starts as the input projection of all steps)::

    GH_t = h_{t-1} W_hhᵀ + b_hn;   [r, z] = σ(GX_t + GH_t);   n = tanh(GX_n + r ∗ GH_n)
    h_t = n + z ∗ (h_{t-1} − n)

Backward: every factor that turns dh_t into gate gradients is fixed once the forward pass is done,
so they are computed for all steps before the loop (``Q``), and the loop is two products and a GEMM::

    dh = dh_carry + dY_t;   dGH_t = Q_t ∗ dh;   dh_carry = dh ∗ z + dGH_t W_hh
"""
from __future__ import annotations

import torch
from torch import Tensor

from .layout import Layout


def internal_weights(w_ih, w_hh, b_ih, b_hh):
    H = w_hh.shape[0] // 3
    scale = torch.ones(3 * H, 1, dtype=w_ih.dtype, device=w_ih.device)
    scale[2 * H :] = 2.0
    w_ih, w_hh = w_ih * scale, w_hh * scale
    if b_ih is None:
        return w_ih, w_hh, None, None
    zeros = b_hh.new_zeros(2 * H)
    b_x = (b_ih + torch.cat([b_hh[: 2 * H], zeros[:H]])) * scale.squeeze(1)
    b_h = torch.cat([zeros, 2.0 * b_hh[2 * H :]])
    return w_ih, w_hh, b_x, b_h


class GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, w_ih, w_hh, b_x, b_h, layout: Layout):
        # X (N, I) packed; h0 (B, H) sorted; w_ih (3H, I); w_hh (3H, H); b_x, b_h (3H,)
        H = w_hh.shape[1]
        N = X.shape[0]
        GX = torch.addmm(b_x, X, w_ih.t()) if b_x is not None else X @ w_ih.t()  # (N, 3H)
        GH = X.new_empty(N, 3 * H)
        Y = X.new_empty(N, H)
        w_hhT = w_hh.t()
        two = X.new_tensor(2.0)
        one = X.new_tensor(1.0)
        h_prev = h0
        for s, b in layout.steps:
            hp = h_prev[:b]
            gh = GH[s : s + b]
            if b_h is not None:
                torch.addmm(b_h, hp, w_hhT, out=gh)
            else:
                torch.mm(hp, w_hhT, out=gh)
            gx = GX[s : s + b]
            rz = gx[:, : 2 * H].add_(gh[:, : 2 * H]).sigmoid_()
            r, z = rz[:, :H], rz[:, H:]
            n = gx[:, 2 * H :].addcmul_(r, gh[:, 2 * H :]).sigmoid_().mul_(two).sub_(one)
            h = torch.sub(hp, n, out=Y[s : s + b])
            h_prev = h.mul_(z).add_(n)
        ctx.layout = layout
        ctx.has_bias = b_x is not None
        ctx.save_for_backward(X, h0, w_ih, w_hh, GX, GH, Y)
        return Y, layout.final(Y)

    @staticmethod
    def backward(ctx, dY, dh_n):
        X, h0, w_ih, w_hh, GX, GH, Y = ctx.saved_tensors
        layout: Layout = ctx.layout
        H = Y.shape[1]
        dY = torch.zeros_like(Y) if dY is None else dY.contiguous()
        dh_carry = torch.zeros_like(h0) if dh_n is None else dh_n.clone()

        r, z, n = GX[:, :H], GX[:, H : 2 * H], GX[:, 2 * H :]
        gh_n = GH[:, 2 * H :]
        H_prev = layout.previous(h0, Y)
        Pn = (1 - z) * (1 - n * n) * 0.5  # ∂h/∂(scaled n pre-activation)
        Q = torch.empty_like(GX)  # dGH = Q ∗ dh
        torch.mul(Pn * gh_n, r * (1 - r), out=Q[:, :H])
        torch.mul(H_prev - n, z * (1 - z), out=Q[:, H : 2 * H])
        torch.mul(Pn, r, out=Q[:, 2 * H :])

        dGH = torch.empty_like(GX)
        dH = torch.empty_like(Y)
        for s, b in reversed(layout.steps):
            dh = torch.add(dh_carry[:b], dY[s : s + b], out=dH[s : s + b])
            dgh = torch.mul(Q[s : s + b].view(b, 3, H), dh.unsqueeze(1), out=dGH[s : s + b].view(b, 3, H))
            torch.addmm(dh * z[s : s + b], dgh.view(b, 3 * H), w_hh, out=dh_carry[:b])

        dGX = dGH.clone()
        torch.mul(dH, Pn, out=dGX[:, 2 * H :])
        needs = ctx.needs_input_grad
        dX = dGX @ w_ih if needs[0] else None
        dw_ih = dGX.t() @ X if needs[2] else None
        dw_hh = dGH.t() @ H_prev if needs[3] else None
        db_x = dGX.sum(0) if ctx.has_bias and needs[4] else None
        db_h = dGH.sum(0) if ctx.has_bias and needs[5] else None
        return dX, dh_carry, dw_ih, dw_hh, db_x, db_h, None


def gru_layer(X: Tensor, h0: Tensor, w, layout: Layout):
    w_ih, w_hh, b_x, b_h = internal_weights(w.w_ih, w.w_hh, w.b_ih, w.b_hh)
    return GRUFunction.apply(X, h0, w_ih, w_hh, b_x, b_h, layout)
