"""Fused GRU: forward recurrence and hand-written backpropagation through time.

Internal layout (``input_projection``): torch's gate order ``r, z, n``; the input part of the n
pre-activation is scaled by 2 (in W_ih and the bias), and the recurrent part is added twice
(``addcmul`` with value 2), so that n = 2σ(2a) − 1 = tanh(a) costs a sigmoid while W_hh, b_hn and the
recurrent layer norm's parameters are used as they are. The r and z parts of b_hh are folded into the
input bias; b_hn stays on the recurrent side because r multiplies it.
The caller computes ``GX = X W_ihᵀ + b`` for all steps under autograd and gets ∂L/∂GX back; the
activated gates overwrite GX (its own buffer: a fresh one would cost page faults).

Forward, per step over its b live rows (m the recurrent dropout mask, z_h the zoneout keep)::

    GH_t = (m ∗ h_{t-1}) W_hhᵀ + b_hn          (layer-normalised before the bias with layer_norm)
    [r, z] = σ(GX_t + GH_t);   n = tanh(GX_n + r ∗ GH_n) = 2σ(2 GX_n + 2 r ∗ GH_n) − 1
    h̃_t = n + z ∗ (h_{t-1} − n)
    h_t = h̃_t + z_h ∗ (h_{t-1} − h̃_t)

Backward: every factor that turns ∂L/∂h̃_t into gate gradients is fixed once the forward pass is done,
so they are computed for all steps before the loop (``Q``), and the loop is two products and a GEMM::

    dh = dh_carry + dY_t;   dh̃ = dh (1 − z_h);   dGH_t = Q_t ∗ dh̃;   dh_carry = dh̃ ∗ z + m ∗ (dGH_t W_hh) + dh z_h

Without dropout or zoneout on h the step writes the step before's dh̃ directly:
dh̃_{t-1} = dY_{t-1} + dh̃ ∗ z + dGH_t W_hh (one ``addcmul`` and one in-place GEMM).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.ops import aten

from ..types import LN_EPS, LayerWeights, Noise
from . import buffers, step_kernels
from .layout import Layout
from .lstm import (carry_from, double_gate, keep_rows, ln_affine_grads, overwrote_input, scaled_one_minus_square,
                   sigmoid_grad_into)
from .products import StepProduct, whole_product_on_onednn
from .projection import hand_written, layer_norm, project


def _scale_n(w: Tensor) -> Tensor:
    """Rows in torch's gate order ``r, z, n``, the n block (the last third) multiplied by 2."""
    return double_gate(w, 3, 2)


def input_projection(X: Tensor, w: LayerWeights) -> tuple[Tensor, dict]:
    H = w.w_hh.shape[1]
    b_x = b_hn = None
    if w.b_ih is not None:  # b_ih with the r and z parts of b_hh, its n block scaled by 2 (forwards and
        # backwards 0.85x the time of b_hh's n block zeroed, added and scaled by _scale_n)
        b_x = torch.cat((w.b_ih[: 2 * H] + w.b_hh[: 2 * H], w.b_ih[2 * H :] * 2))
        b_hn = w.b_hh[2 * H :]
    if not w.layer_norm:
        w_ih = _scale_n(w.w_ih)
        return project(X, w_ih, b_x), dict(w_hh=w.w_hh, b_hn=b_hn)
    A = project(X, w.w_ih)  # the ×2 goes on the layer norm's gain and bias (it would normalise away)
    ln_bias = _scale_n(w.ln_ih_b) if b_x is None else _scale_n(w.ln_ih_b) + b_x  # both per column
    GX = layer_norm(A, _scale_n(w.ln_ih_w), ln_bias, LN_EPS)
    return GX, dict(w_hh=w.w_hh, b_hn=b_hn, ln_h_w=w.ln_hh_w, ln_h_b=w.ln_hh_b)


class GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, GX, h0, w_hh, b_hn, ln_h_w, ln_h_b, mask, zone_h, layout: Layout):
        # GX (N, 3H) packed; h0 (B, H) sorted; w_hh (3H, H); b_hn (H,) or None (the n gate's recurrent bias);
        # ln_h_* (3H,) or None; mask (B, H) or None; zone_h (N, H), float or None
        H = w_hh.shape[1]
        N = GX.shape[0]
        # The gates overwrite their input parts in GX, its own buffer (a fresh one costs page faults):
        # r, z (activated) in the first 2H columns, n (activated) in the last H.
        RZ, Nn = GX[:, : 2 * H], GX[:, 2 * H :]
        GHn = buffers.empty((N, H), GX)  # recurrent part of n (r multiplies it; needed backwards)
        AH = buffers.empty_like(GX) if ln_h_w is not None else None
        stats: list[Tensor] = []  # per step: mean and 1/std of each row's recurrent part (layer norm)
        Y = buffers.empty((N, H), GX)
        w_hhT = w_hh.t()
        w_rzT, w_nT = w_hhT[:, : 2 * H], w_hhT[:, 2 * H :]
        steps = len(layout.steps)
        if AH is None and not whole_product_on_onednn(w_hhT, steps):  # a product per column block: r, z and n
            product, p_rz, p_n = None, StepProduct(w_rzT, layout.B, steps), StepProduct(w_nT, layout.B, steps)
        else:
            product = StepProduct(w_hhT, layout.B, steps)
        ln_bias = ln_h_b  # the layer norm's bias, then b_hn on the n part
        if ln_h_b is not None and b_hn is not None:
            ln_bias = torch.cat((ln_h_b[: 2 * H], ln_h_b[2 * H :] + b_hn))
        per = layout.split  # per-step views, made once
        RZ_s, GHn_s, Y_s, AH_s, zh_s = map(per, (RZ, GHn, Y, AH, zone_h))
        hp_s = layout.previous_views(h0, Y_s)  # h_{t-1} of each step's live rows
        mask_s = None if mask is None else layout.heads(mask)
        if product is None:
            p_n.begin(GHn, b_hn)
        else:
            product.begin(GHn, b_hn) if AH is None else product.begin(AH)
        # The element-wise work of a step in one compiled call where it loaded (step_kernels.py), else
        # torch's operators below: the same computation.
        compiled = step_kernels.usable(GX) and h0.stride(-1) == 1
        if compiled:
            stats = GX.new_empty((2, N, 1)) if AH is not None else None
            G_s, st_s = per(GX), layout.split_stats(stats)
        else:
            two, one = GX.new_tensor(2.0), GX.new_tensor(1.0)
            Nn_s, r_s, z_s = per(Nn), per(RZ[:, :H]), per(RZ[:, H:])
        for k in range(len(layout.steps)):
            hp = hp_s[k]
            h_in = hp if mask is None else hp * mask_s[k]
            rz = RZ_s[k]
            a = None  # the recurrent product, with layer norm
            if product is None:  # r, z: the recurrent product accumulates straight onto the input part
                p_rz.acc(rz, h_in)
                p_n.store(GHn_s[k], h_in)
            elif AH is None:  # the same from oneDNN's product of the whole matrix
                p = product.full(h_in)
                rz.add_(p[:, : 2 * H])
                if b_hn is None:
                    GHn_s[k].copy_(p[:, 2 * H :])
                else:
                    torch.add(p[:, 2 * H :], b_hn, out=GHn_s[k])
            else:
                a = product.store(AH_s[k], h_in)
            if compiled:
                step_kernels.gru_forward(G_s[k], a, ln_h_w, ln_bias, st_s and st_s[k], GHn_s[k], hp, Y_s[k], LN_EPS)
                y = Y_s[k]
            else:
                if a is not None:
                    gh, mean, rstd = torch.native_layer_norm(a, (3 * H,), ln_h_w, ln_bias, LN_EPS)
                    stats += (mean, rstd)
                    rz.add_(gh[:, : 2 * H])
                    GHn_s[k].copy_(gh[:, 2 * H :])
                rz.sigmoid_()
                n = Nn_s[k].addcmul_(r_s[k], GHn_s[k], value=2).sigmoid_().mul_(two).sub_(one)
                y = torch.lerp(n, hp, z_s[k], out=Y_s[k])  # n + z (h_{t-1} − n)
            if zone_h is not None:
                y.lerp_(hp, zh_s[k])
        if not compiled:  # (2, N, 1)
            stats = torch.stack((torch.cat(stats[0::2]), torch.cat(stats[1::2]))) if AH is not None else None
        ctx.layout = layout
        ctx.zone_h = zone_h
        overwrote_input(ctx, GX)
        ctx.save_for_backward(h0, w_hh, ln_h_w, ln_h_b, mask, GX, GHn, AH, stats, Y)
        return Y, layout.final(Y), GX

    @staticmethod
    @hand_written
    def backward(ctx, dY, dh_n, _):
        h0, w_hh, ln_h_w, ln_h_b, mask, G, gh_n, AH, stats, Y = ctx.saved_tensors
        zone_h = ctx.zone_h
        layout: Layout = ctx.layout
        H = Y.shape[1]
        dY = buffers.contiguous(dY, Y)
        dh_carry = carry_from(dh_n, h0)
        if AH is None and step_kernels.usable(Y) and h0.stride(-1) == 1:
            return _compiled_plain_backward(layout, dY, G, gh_n, h0, Y, w_hh, mask, zone_h, dh_carry,
                                            ctx.needs_input_grad)

        # (In place, into their own buffers: each fresh (N, H) temporary costs its page faults.)
        r, z, n = G.split(H, 1)
        dHt = buffers.empty_like(Y)  # ∂L/∂h̃_t (in the loop; before it, h_{t-1} − n)
        Pn = scaled_one_minus_square(n, 1.0, out=buffers.empty_like(Y))  # 1 − n², then ∗ (1 − z):
        Pn.addcmul_(Pn, z, value=-1)  # ∂h̃/∂(GX_n + r ∗ GH_n) = (1 − z)(1 − n²), twice ∂h̃/∂(scaled GX_n)
        Q = buffers.empty((Y.shape[0], 3 * H), Y)  # dGH = Q ∗ dh̃
        Qr, Qz, Qn = Q.split(H, 1)
        sigmoid_grad_into(r, Qr).mul_(gh_n).mul_(Pn)  # Pn gh_n r (1 − r)
        sigmoid_grad_into(z, Qz).mul_(layout.previous_minus(h0, Y, n, out=dHt))  # (h_{t-1} − n) z (1 − z)
        torch.mul(Pn, r, out=Qn)

        dGH = Q  # each step's factors are used once, then replaced by its gradients dGH_t
        # ∂L/∂(h_in W_hhᵀ); with layer norm each step's is copied into a block of its own (as in the LSTM)
        dA = buffers.empty_like(AH) if AH is not None else dGH
        per = layout.split  # per-step views, made once
        dY_s, dHt_s, Q_s, z_s, AH_s, dA_s = map(per, (dY, dHt, Q, z, AH, dA))
        zh_s = per(zone_h)
        st_s = layout.split_stats(stats)
        carry_s = layout.heads(dh_carry)  # ∂L/∂h_{t-1} of each step's live rows, in place
        mask_s = None if mask is None else layout.heads(mask)
        # Without dropout or zoneout a step also adds the step before's dY into its GEMM's output: one op less.
        fold = mask is None and zone_h is None
        product = StepProduct(w_hh, layout.B, len(layout.steps))
        # (the compiled step: only with layer norm, where it replaces three calls; without, a step's
        # element-wise work is one multiplication)
        compiled = AH is not None and step_kernels.usable(Q)
        affine = step_kernels.affine_accumulator(3 * H, Q, compiled)  # the norm's gain and bias gradients, summed
        dht = None  # ∂L/∂h̃ of step k when the step after computed it
        for k, (_, b) in reversed(list(enumerate(layout.steps))):
            carry = carry_s[k]
            if dht is None:
                dht = torch.add(carry, dY_s[k], out=dHt_s[k])
            kept = None
            if zone_h is not None:
                kept = dht * zh_s[k]  # what zoneout passes straight to h_{t-1}
                dht.sub_(kept)  # ∗ (1 − z_h)
            if compiled:  # with layer norm
                step_kernels.gru_backward(Q_s[k], dht, AH_s[k], ln_h_w, st_s[k], dA_s[k], affine)
                da = dA_s[k]
            else:
                da = Q_s[k].view(b, 3, H).mul_(dht.unsqueeze(1)).view(b, 3 * H)
                if AH is not None:
                    da = dA_s[k].copy_(aten.native_layer_norm_backward(da, AH_s[k], (3 * H,), *st_s[k], ln_h_w,
                                                                       ln_h_b, [True, False, False])[0])
            if fold and k > 0:  # ∂L/∂h̃_{t-1} = dY_{t-1} + dh̃ ∗ z + da W_hh
                out, dY_prev = layout.join_previous(k, dHt_s, dY_s, carry_s)
                product.acc(torch.addcmul(dY_prev, dht, z_s[k], out=out), da)
                dht = dHt_s[k - 1]
                continue
            # carry = dh̃ ∗ z + m ∗ (da W_hh) (+ kept), written in place
            if mask is None:
                product.acc(torch.mul(dht, z_s[k], out=carry), da)
            else:
                product.into(carry, da).mul_(mask_s[k]).addcmul_(dht, z_s[k])
            if kept is not None:
                carry.add_(kept)
            dht = None

        needs = ctx.needs_input_grad
        db_hn = dGH[:, 2 * H :].sum(0) if needs[3] else None
        dln_w = dln_b = None
        if affine is not None:
            dln_w, dln_b = affine.to(Q.dtype)
        elif AH is not None:
            dln_w, dln_b = ln_affine_grads(dGH, AH, stats, ln_h_w, ln_h_b)
        dw_hh = layout.previous_product(dA, h0, Y, mask) if needs[2] else None
        dGX = dGH  # ∂L/∂GX is dGH but for the input part of n, written over it now that it is used
        torch.addcmul(dHt.new_zeros(()), dHt, Pn, value=0.5, out=dGX[:, 2 * H :])  # the input part, scaled by 2
        return dGX, dh_carry, dw_hh, db_hn, dln_w, dln_b, None, None, None


def _compiled_plain_backward(layout: Layout, dY: Tensor, G: Tensor, gh_n: Tensor, h0: Tensor, Y: Tensor,
                             w_hh: Tensor, mask, zone_h, dh_carry: Tensor, needs) -> tuple:
    """The backward pass without layer norm on the compiled step: each step's factors are formed in the step
    (``gru_backward_plain_step``), while its rows are in cache, instead of in passes over all steps before
    the loop; then one product, accumulated onto the carry in place. Same results as the loop below it.
    A one-layer training step at B32 T100 H128 took 0.92× the time of the operator loop's (float32, two
    threads, A/B in one process, an AVX-512 Xeon); at H = 256 (two bidirectional layers) and 512, where the
    products dominate, 1.00×. (``benchmarks/bench_step_kernels.py`` times the whole compiled step, forwards
    too, against the operator path: 1.02–1.03× for two plain layers there.)"""
    H = Y.shape[1]
    Q = buffers.empty((Y.shape[0], 3 * H), Y)  # dGH, then ∂L/∂GX (the n part replaced at the end)
    E = buffers.empty_like(Y)  # ∂L/∂(n's input part)
    per = layout.split  # per-step views, made once
    dY_s, G_s, ghn_s, Q_s, E_s = map(per, (dY, G, gh_n, Q, E))
    zh_s = keep_rows(layout, zone_h, Y, H)
    hp_s = layout.previous_views(h0, per(Y))  # h_{t-1} of each step's live rows
    carry_s = layout.heads(dh_carry)  # ∂L/∂h of each step's live rows, in place
    mask_s = per(None) if mask is None else layout.heads(mask)
    product = StepProduct(w_hh, layout.B, len(layout.steps))
    for k in reversed(range(len(layout.steps))):
        carry = carry_s[k]
        step_kernels.gru_backward_plain(carry, dY_s[k], G_s[k], ghn_s[k], hp_s[k], zh_s[k], Q_s[k], E_s[k])
        if mask is None:
            product.acc(carry, Q_s[k])
        else:
            carry.addcmul_(product.new(Q_s[k]), mask_s[k])
    db_hn = Q[:, 2 * H:].sum(0) if needs[3] else None
    dw_hh = layout.previous_product(Q, h0, Y, mask) if needs[2] else None
    Q[:, 2 * H:].copy_(E)
    return Q, dh_carry, dw_hh, db_hn, None, None, None, None, None


def gru_layer(X: Tensor, h0: Tensor, w: LayerWeights, layout: Layout, noise: Noise):
    GX, p = input_projection(X, w)
    mask = None if noise.recurrent is None else layout.sort(noise.recurrent)
    Y, h_n, _ = GRUFunction.apply(GX, h0, p["w_hh"], p["b_hn"], p.get("ln_h_w"), p.get("ln_h_b"), mask,
                                  layout.pack_noise(noise.zone_h), layout)
    return Y, h_n
