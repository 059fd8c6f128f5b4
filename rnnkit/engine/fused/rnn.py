"""Fused vanilla RNN (tanh or ReLU): forward recurrence and hand-written BPTT.

Forward, per step (m the recurrent dropout mask, z_h the zoneout keep)::

    h̃_t = φ(GX_t + (m ∗ h_{t-1}) W_hhᵀ);   h_t = h̃_t + z_h ∗ (h_{t-1} − h̃_t)

computed in place in GX, whose buffer becomes the output (a fresh one would cost page faults; autograd
is told GX was overwritten). For φ = tanh the weights and GX arrive scaled by 2 and
tanh(a) = 2σ(2a) − 1 is computed with a sigmoid, several times cheaper than ``tanh_`` on CPU; the
scale goes back through autograd in ``rnn_layer``. Backward: φ' depends only on h̃ (1 − h̃² — halved
for the scaled pre-activation — or [h̃ > 0]), so it is computed for all steps first, each step's dA_t
overwrites its φ'_t, and the loop is::

    dA_t = (dh_carry + dY_t)(1 − z_h) ∗ φ'_t;   dh_carry = m ∗ (dA_t W_hh) + (dh_carry + dY_t) z_h

Without dropout or zoneout the step's GEMM also adds the step before's output gradient:
dh_{t-1} = dY_{t-1} + dA_t W_hh in one ``addmm``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..types import LayerWeights, Noise
from . import buffers
from .layout import Layout
from .lstm import carry_to_previous, scaled_one_minus_square
from .products import StepProduct
from .projection import hand_written, project


def _tanh_loop_in_sigmoid_space(GX: Tensor, h0: Tensor, w_hh: Tensor, zone_h, layout: Layout):
    """The tanh recurrence carried as s = σ(a′) with h = 2s − 1 (a′ the doubled pre-activation), so a step
    is one in-place GEMM and one sigmoid: a′_t = GX_t + h_{t-1} W′ᵀ = (GX_t − W′·1) + s_{t-1} (2W′)ᵀ.
    Zoneout's lerp commutes with the affine map. Returns (h̃, h) for all rows, converted after the loop;
    h is written over GX (see ``RNNFunction``)."""
    if zone_h is None:
        S = Z = GX.sub_(w_hh.sum(1))  # the GEMM accumulates into it in place
    else:
        S, Z = torch.sub(GX, w_hh.sum(1), out=buffers.empty_like(GX)), GX  # Z: s of the state after zoneout
    product = StepProduct((2 * w_hh).t(), layout.B, len(layout.steps))
    S_s, Z_s, zh_s = layout.split(S), layout.split(Z), layout.split(zone_h)  # per-step views, made once
    sp_s = layout.previous_views((h0 + 1) * 0.5, Z_s)  # s_{t-1} of each step's live rows
    for k in range(len(layout.steps)):
        st = product.acc(S_s[k], sp_s[k]).sigmoid_()
        if zone_h is not None:
            torch.lerp(st, sp_s[k], zh_s[k], out=Z_s[k])
    Ht = S.mul_(2).sub_(1)
    return Ht, (Ht if zone_h is None else Z.mul_(2).sub_(1))


class RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, GX, h0, w_hh, mask, zone_h, layout: Layout, relu: bool):
        # GX (N, H) = X W_ihᵀ + b_ih + b_hh packed; h0 (B, H) sorted; w_hh (H, H)
        if not relu and mask is None:
            Ht, Y = _tanh_loop_in_sigmoid_space(GX, h0, w_hh, zone_h, layout)
        else:
            Y = GX  # each step's input part is read (by the GEMM) before its output overwrites it
            Ht = Y if zone_h is None else buffers.empty_like(GX)  # h̃_t, before zoneout
            product = StepProduct(w_hh.t(), layout.B, len(layout.steps))
            two, one = GX.new_tensor(2.0), GX.new_tensor(1.0)
            GX_s, Ht_s, Y_s, zh_s = map(layout.split, (GX, Ht, Y, zone_h))  # per-step views, made once
            hp_s = layout.previous_views(h0, Y_s)  # h_{t-1} of each step's live rows
            mask_s = None if mask is None else layout.heads(mask)
            for k in range(len(layout.steps)):
                hp = hp_s[k]
                h_in = hp if mask is None else hp * mask_s[k]
                if zone_h is None:  # Ht is GX: the GEMM accumulates onto the input part in place
                    h = product.acc(Ht_s[k], h_in)
                else:
                    h = product.into(Ht_s[k], h_in, GX_s[k])
                h = h.relu_() if relu else h.sigmoid_().mul_(two).sub_(one)
                if zone_h is not None:
                    torch.lerp(h, hp, zh_s[k], out=Y_s[k])
        ctx.mark_dirty(GX)  # the outputs are written over GX, our own buffer (a fresh one costs page faults)
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not a fresh zero block
        ctx.layout, ctx.relu, ctx.zone_h = layout, relu, zone_h
        ctx.save_for_backward(h0, w_hh, mask, Ht, Y)
        return Y, layout.final(Y)

    @staticmethod
    @hand_written
    def backward(ctx, dY, dh_n):
        h0, w_hh, mask, Ht, Y = ctx.saved_tensors
        layout: Layout = ctx.layout
        zone_h = ctx.zone_h
        dY = buffers.contiguous(dY, Y)
        dh_carry = torch.zeros_like(h0) if dh_n is None else dh_n.clone()
        # φ'(a_t), all steps at once (in place: a fresh temporary costs its page faults)
        D = buffers.empty_like(Ht)
        if ctx.relu:
            torch.gt(Ht, 0, out=D)
        else:
            scaled_one_minus_square(Ht, 0.5, out=D)
        if isinstance(zone_h, Tensor):
            D.addcmul_(D, zone_h, value=-1)  # ∗ (1 − z_h)
        elif zone_h is not None:
            D.mul_(1 - zone_h)
        dA = D  # each step's φ' is used once, then replaced by ∂L/∂a_t
        dY_s, D_s, zh_s = map(layout.split, (dY, D, zone_h))  # per-step views, made once
        carry_s = layout.heads(dh_carry)  # ∂L/∂h_{t-1} of each step's live rows, in place
        dh_s = layout.heads(torch.empty_like(h0))  # ∂L/∂h_t of each step's live rows
        product = StepProduct(w_hh, layout.B, len(layout.steps))
        if mask is None and zone_h is None:
            _plain_backward_loop(layout, dY_s, D_s, carry_s, dh_s, product)
        else:
            mask_s = layout.heads(mask) if mask is not None else layout.split(None)
            for k in reversed(range(len(layout.steps))):
                dh = torch.add(carry_s[k], dY_s[k], out=dh_s[k])
                da = D_s[k].mul_(dh)
                carry_to_previous(carry_s[k], da, product, mask_s[k], None if zone_h is None else dh.mul_(zh_s[k]))
        dw_hh = layout.previous_product(dA, h0, Y, mask) if ctx.needs_input_grad[2] else None
        return dA, dh_carry, dw_hh, None, None, None, None


def _plain_backward_loop(layout: Layout, dY_s: list, D_s: list, carry_s: list, dh_s: list,
                        product: StepProduct) -> None:
    """The loop without dropout or zoneout, one GEMM and one product a step: ∂L/∂h_{t-1} = dY_{t-1} + dA_t W_hh
    is a single ``addmm``. ``carry_s`` holds ∂L/∂h_n until each sequence's last step joins the loop
    (``Layout.join_previous``) and receives ∂L/∂h_0 at the end."""
    k = len(layout.steps) - 1
    dh = torch.add(carry_s[k], dY_s[k], out=dh_s[k])
    for k in range(k, 0, -1):
        da = D_s[k].mul_(dh)
        out, dY = layout.join_previous(k, dh_s, dY_s, carry_s)
        product.into(out, da, dY)
        dh = dh_s[k - 1]
    product.into(carry_s[0], D_s[0].mul_(dh))


def rnn_layer(X: Tensor, h0: Tensor, w: LayerWeights, layout: Layout, noise: Noise, relu: bool):
    scale = 1.0 if relu else 2.0
    bias = None if w.b_ih is None else (w.b_ih + w.b_hh) * scale
    w_ih, w_hh = (w.w_ih, w.w_hh) if relu else (w.w_ih * scale, w.w_hh * scale)
    GX = project(X, w_ih, bias)
    mask = None if noise.recurrent is None else layout.sort(noise.recurrent)
    return RNNFunction.apply(GX, h0, w_hh, mask, layout.pack_noise(noise.zone_h), layout, relu)
