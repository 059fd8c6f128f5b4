"""Fused LSTM: forward recurrence and hand-written backpropagation through time.

Internal layout (set up by ``internal_weights``): gates in the order ``i, f, o, g`` so one sigmoid
covers the whole (b, 4H) block, with the g rows scaled by 2 because tanh(a) = 2σ(2a) − 1 and
``sigmoid_`` is several times cheaper than ``tanh_`` on CPU. Autograd maps gradients back to torch's
``i, f, g, o`` layout through that index-and-scale, so this file only deals with its own layout.

Forward, per step t over its b live rows (``G`` starts as the input projection of all steps)::

    G_t += h_{t-1} W_hhᵀ;  G_t = σ(G_t);  g = 2·g − 1
    C_t = f ∗ C_{t-1} + i ∗ g;   h_t = o ∗ tanh(C_t)   (then h_t = h_t W_hrᵀ with a projection)

Backward, per step, only what depends on the recurrence (the rest is done for all steps at once)::

    dh = dh_carry + dY_t;   dc = dc_carry + dh ∗ o ∗ (1 − tanh²C_t)
    dG_t = [dc·g·σ', dc·C_{t-1}·σ', dh·tanh C_t·σ', dc·i·(1 − g²)/2]
    dc_carry = dc ∗ f;   dh_carry = dG_t W_hh
"""
from __future__ import annotations

import torch
from torch import Tensor

from .layout import Layout


def internal_weights(w_ih, w_hh, b_ih, b_hh):
    """torch layout (i, f, g, o) → internal (i, f, o, g) with g scaled by 2; the biases are summed."""
    H = w_hh.shape[0] // 4
    perm = torch.tensor([0, 1, 3, 2], device=w_ih.device)
    scale = torch.tensor([1.0, 1.0, 1.0, 2.0], dtype=w_ih.dtype, device=w_ih.device)

    def convert(w: Tensor) -> Tensor:
        v = w.reshape(4, H, -1)
        return (v.index_select(0, perm) * scale.view(4, 1, 1)).reshape(4 * H, -1)

    bias = None if b_ih is None else convert((b_ih + b_hh).unsqueeze(1)).squeeze(1)
    return convert(w_ih), convert(w_hh), bias


class LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, c0, w_ih, w_hh, bias, w_hr, layout: Layout):
        # X (N, I) packed; h0 (B, P), c0 (B, H) sorted; w_ih (4H, I), w_hh (4H, P), bias (4H,), w_hr (P, H)
        H = w_hh.shape[0] // 4
        N = X.shape[0]
        G = torch.addmm(bias, X, w_ih.t()) if bias is not None else X @ w_ih.t()  # (N, 4H)
        C = X.new_empty(N, H)
        TC = X.new_empty(N, H)  # tanh(C_t), kept for the backward pass
        R = X.new_empty(N, H) if w_hr is not None else None  # o ∗ tanh(C) before the projection
        Y = X.new_empty(N, w_hh.shape[1])
        w_hhT = w_hh.t()
        w_hrT = w_hr.t() if w_hr is not None else None
        two = X.new_tensor(2.0)
        one = X.new_tensor(1.0)
        h_prev, c_prev = h0, c0
        for s, b in layout.steps:
            G_t = G[s : s + b]
            G_t.addmm_(h_prev[:b], w_hhT).sigmoid_()
            i, f, o, g = G_t[:, :H], G_t[:, H : 2 * H], G_t[:, 2 * H : 3 * H], G_t[:, 3 * H :]
            g.mul_(two).sub_(one)  # tanh of the candidate cell state
            C_t = torch.mul(f, c_prev[:b], out=C[s : s + b])
            C_t.addcmul_(i, g)
            tc = torch.tanh(C_t, out=TC[s : s + b])
            if w_hr is None:
                h_prev = torch.mul(o, tc, out=Y[s : s + b])
            else:
                r = torch.mul(o, tc, out=R[s : s + b])
                h_prev = torch.mm(r, w_hrT, out=Y[s : s + b])
            c_prev = C_t
        h_n, c_n = layout.final(Y), layout.final(C)
        ctx.layout = layout
        ctx.has_bias = bias is not None
        ctx.save_for_backward(X, h0, c0, w_ih, w_hh, w_hr, G, C, TC, R, Y)
        return Y, h_n, c_n

    @staticmethod
    def backward(ctx, dY, dh_n, dc_n):
        X, h0, c0, w_ih, w_hh, w_hr, G, C, TC, R, Y = ctx.saved_tensors
        layout: Layout = ctx.layout
        H = C.shape[1]
        N = X.shape[0]
        dY = torch.zeros_like(Y) if dY is None else dY.contiguous()
        dh_carry = torch.zeros_like(h0) if dh_n is None else dh_n.clone()
        dc_carry = torch.zeros_like(c0) if dc_n is None else dc_n.clone()

        # Everything that does not depend on the recurrence, for all steps at once.
        i, f, o, g = G[:, :H], G[:, H : 2 * H], G[:, 2 * H : 3 * H], G[:, 3 * H :]
        C_prev = layout.previous(c0, C)
        OD = o * (1 - TC * TC)  # ∂h/∂C through tanh, times o
        M = torch.empty_like(G)  # dG = M ∗ [dc, dc, dh, dc]
        torch.mul(g, i * (1 - i), out=M[:, :H])
        torch.mul(C_prev, f * (1 - f), out=M[:, H : 2 * H])
        torch.mul(TC, o * (1 - o), out=M[:, 2 * H : 3 * H])
        torch.mul(i, (1 - g * g) * 0.5, out=M[:, 3 * H :])
        del C_prev

        dG = torch.empty_like(G)
        dH = torch.empty_like(Y)  # total gradient reaching each h_t
        for s, b in reversed(layout.steps):
            dh = torch.add(dh_carry[:b], dY[s : s + b], out=dH[s : s + b])
            dr = dh if w_hr is None else dh @ w_hr  # (b, H)
            dc = torch.addcmul(dc_carry[:b], dr, OD[s : s + b])
            dG_t = dG[s : s + b]
            torch.mul(M[s : s + b].view(b, 4, H), dc.unsqueeze(1), out=dG_t.view(b, 4, H))
            torch.mul(M[s : s + b, 2 * H : 3 * H], dr, out=dG_t[:, 2 * H : 3 * H])
            torch.mul(dc, f[s : s + b], out=dc_carry[:b])
            torch.mm(dG_t, w_hh, out=dh_carry[:b])

        needs = ctx.needs_input_grad
        dX = dG @ w_ih if needs[0] else None
        dw_ih = dG.t() @ X if needs[3] else None
        dw_hh = dG.t() @ layout.previous(h0, Y) if needs[4] else None
        dbias = dG.sum(0) if ctx.has_bias and needs[5] else None
        dw_hr = dH.t() @ R if w_hr is not None and needs[6] else None
        return dX, dh_carry, dc_carry, dw_ih, dw_hh, dbias, dw_hr, None


def lstm_layer(X: Tensor, h0: Tensor, c0: Tensor, w, layout: Layout):
    """Packed (N, I) → (Y (N, P), h_n, c_n) in sorted order; ``w`` is a ``LayerWeights``."""
    w_ih, w_hh, bias = internal_weights(w.w_ih, w.w_hh, w.b_ih, w.b_hh)
    return LSTMFunction.apply(X, h0, c0, w_ih, w_hh, bias, w.w_hr, layout)
