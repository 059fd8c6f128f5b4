"""Fused vanilla RNN (tanh or ReLU): forward recurrence and hand-written BPTT.

Forward, per step (m the recurrent dropout mask, z_h the zoneout keep)::

    h̃_t = φ(GX_t + (m ∗ h_{t-1}) W_hhᵀ);   h_t = h̃_t + z_h ∗ (h_{t-1} − h̃_t)

computed in place in GX, whose buffer becomes the output (a fresh one would cost page faults; autograd
is told GX was overwritten). Backward, with φ' from h̃ alone (1 − h̃² for tanh, [h̃ > 0] for ReLU)::

    dh_t = dh_carry + dY_t;   dA_t = dh_t (1 − z_h) ∗ φ'_t;   dh_carry = m ∗ (dA_t W_hh) + dh_t z_h

Two element-wise paths, one product per step in both:

- compiled (CPU float32/float64 where ``step_kernels`` loaded): a step is its product and one call of
  ``rnn_forward_step`` (φ, zoneout; ``rnn_activate`` without zoneout) forwards, one of ``rnn_backward_step``
  (dh_t, φ', zoneout's split; ``rnn_backward_rows`` without) and the product backwards. ``dh_carry`` is a (B, H) block whose first b_t rows are the live ones: a
  sequence that ends at step t finds ∂L/∂h_n in its row, untouched until then.
- torch's operators (everything else): ``tanh_`` is several times slower than ``sigmoid_`` on CPU, so for
  φ = tanh the weights and GX arrive scaled by 2 and tanh(a) = 2σ(2a) − 1 is computed with a sigmoid; the
  scale goes back through autograd in ``rnn_layer``. φ' is computed for all steps before the loop, and
  each step's dA_t overwrites its φ'_t. Without dropout or zoneout the step's GEMM also adds the step
  before's output gradient: dh_{t-1} = dY_{t-1} + dA_t W_hh in one ``addmm``.

Two-layer training steps on the compiled path were 1.04× faster than on the operator path at B32 T100 H128
and B64 T100 H512, 1.12–1.14× bidirectional (``BidirectionalRNNFunction`` below; float32, two threads, an
AVX-512 Xeon, ``benchmarks/bench_step_kernels.py --cells rnn``): the gain is the work around the loop — no
scaled copies of the weights, no passes over all steps to convert σ to tanh or to form φ'.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..types import LayerWeights, Noise
from . import buffers, step_kernels
from .layout import Layout
from .lstm import carry_from, carry_to_previous, keep_rows, scaled_one_minus_square
from .products import StepProduct, weight_grad
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


def _compiled_loop(GX: Tensor, h0: Tensor, w_hh: Tensor, mask, zone_h, layout: Layout, relu: bool):
    """The forward recurrence with the compiled step: one product and one call a step. Returns (h̃, h) for all
    rows; h is written over GX (see ``RNNFunction``), h̃ too without zoneout."""
    Y = GX
    Ht = Y if zone_h is None else buffers.empty_like(GX)
    product = StepProduct(w_hh.t(), layout.B, len(layout.steps))
    GX_s, Ht_s, Y_s = map(layout.split, (GX, Ht, Y))  # per-step views, made once
    zh_s = keep_rows(layout, zone_h, GX, GX.shape[1])
    hp_s = layout.previous_views(h0, Y_s)  # h_{t-1} of each step's live rows
    mask_s = None if mask is None else layout.heads(mask)
    if zone_h is None:  # Ht is GX, contiguous: the product accumulates onto the input part in place
        activate = step_kernels.rnn_rows(GX.dtype)[0]
        for k in range(len(layout.steps)):
            hp = hp_s[k]
            a = product.acc(Ht_s[k], hp if mask is None else hp * mask_s[k])
            n = a.numel()
            activate(1, n, relu, a.data_ptr(), n)
        return Ht, Y
    for k in range(len(layout.steps)):
        hp = hp_s[k]
        a = product.into(Ht_s[k], hp if mask is None else hp * mask_s[k], GX_s[k])
        step_kernels.rnn_forward(a, relu, zh_s[k], hp, Y_s[k])
    return Ht, Y


def _compiled_backward(layout: Layout, dY: Tensor, Ht: Tensor, dh_carry: Tensor, w_hh: Tensor, mask, zone_h,
                       relu: bool) -> Tensor:
    """The backward loop with the compiled step; returns ∂L/∂a for all rows and leaves ∂L/∂h_0 in
    ``dh_carry`` (which holds ∂L/∂h_n on entry)."""
    dA = buffers.empty_like(Ht)
    dY_s, Ht_s, dA_s = map(layout.split, (dY, Ht, dA))  # per-step views, made once
    zh_s = keep_rows(layout, zone_h, Ht, Ht.shape[1])
    carry_s = layout.heads(dh_carry)  # ∂L/∂h of each step's live rows, in place
    kept_s = layout.split(None) if zone_h is None else layout.heads(torch.empty_like(dh_carry))
    mask_s = layout.split(None) if mask is None else layout.heads(mask)
    product = StepProduct(w_hh, layout.B, len(layout.steps))
    if zone_h is None:  # every block contiguous (dY made so by the caller)
        backward = step_kernels.rnn_rows(dA.dtype)[1]
        for k in reversed(range(len(layout.steps))):
            da = dA_s[k]
            n = da.numel()
            backward(1, n, relu, carry_s[k].data_ptr(), dY_s[k].data_ptr(), Ht_s[k].data_ptr(), da.data_ptr(), n)
            carry_to_previous(carry_s[k], da, product, mask_s[k], None)
        return dA
    for k in reversed(range(len(layout.steps))):
        step_kernels.rnn_backward(carry_s[k], dY_s[k], Ht_s[k], relu, zh_s[k], dA_s[k], kept_s[k])
        carry_to_previous(carry_s[k], dA_s[k], product, mask_s[k], kept_s[k])
    return dA


class RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, GX, h0, w_hh, mask, zone_h, layout: Layout, relu: bool, compiled: bool):
        # GX (N, H) = X W_ihᵀ + b_ih + b_hh packed (both scaled by 2 for tanh on the operator path);
        # h0 (B, H) sorted; w_hh (H, H)
        if compiled:
            Ht, Y = _compiled_loop(GX, h0, w_hh, mask, zone_h, layout, relu)
        elif not relu and mask is None:
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
        ctx.layout, ctx.relu, ctx.zone_h, ctx.compiled = layout, relu, zone_h, compiled
        ctx.save_for_backward(h0, w_hh, mask, Ht, Y)
        return Y, layout.final(Y)

    @staticmethod
    @hand_written
    def backward(ctx, dY, dh_n):
        h0, w_hh, mask, Ht, Y = ctx.saved_tensors
        layout: Layout = ctx.layout
        zone_h = ctx.zone_h
        dY = buffers.contiguous(dY, Y)
        dh_carry = carry_from(dh_n, h0)
        if ctx.compiled:
            dA = _compiled_backward(layout, dY, Ht, dh_carry, w_hh, mask, zone_h, ctx.relu)
            dw_hh = layout.previous_product(dA, h0, Y, mask) if ctx.needs_input_grad[2] else None
            return dA, dh_carry, dw_hh, None, None, None, None, None
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
        return dA, dh_carry, dw_hh, None, None, None, None, None


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
    compiled = step_kernels.usable(X) and X.dtype == w.w_hh.dtype and h0.stride(-1) == 1
    scale = 1.0 if relu or compiled else 2.0
    bias = None if w.b_ih is None else w.b_ih + w.b_hh
    w_ih, w_hh = w.w_ih, w.w_hh
    if scale != 1.0:
        bias = None if bias is None else bias * scale
        w_ih, w_hh = w_ih * scale, w_hh * scale
    GX = project(X, w_ih, bias)
    mask = None if noise.recurrent is None else layout.sort(noise.recurrent)
    return RNNFunction.apply(GX, h0, w_hh, mask, layout.pack_noise(noise.zone_h), layout, relu, compiled)


class BidirectionalRNNFunction(torch.autograd.Function):
    """Both directions of a layer over one (T·B, 2H) block of input projections, columns [:H] forwards in
    time and [H:] backwards: each step's rows are read in place (no time-reversed copies of the input, the
    output or their gradients), and the outputs, written over the projections side by side, are already
    the layer's concatenated output. Compiled step only (``step_kernels``); no lengths, dropout or zoneout.

    Backward, per direction, as ``_compiled_backward`` with the rows of the other half between each step's;
    the weight gradients are ``dA_tᵀ h_{t∓1}`` summed by one GEMM over the direction's strided half."""

    @staticmethod
    def forward(ctx, GX: Tensor, h0_f: Tensor, h0_r: Tensor, w_f: Tensor, w_r: Tensor, B: int, relu: bool):
        # GX (T·B, 2H) = X [W_ih_f; W_ih_r]ᵀ + biases; h0_* (B, H); w_* (H, H)
        H, T = w_f.shape[0], GX.shape[0] // B
        activate = step_kernels.rnn_rows(GX.dtype)[0]
        G = GX.view(T, B, 2 * H)
        for d, (h, w) in enumerate(((h0_f, w_f), (h0_r, w_r))):
            S = G[..., d * H:(d + 1) * H].unbind(0)  # per-step views (B, H), rows 2H apart
            product = StepProduct(w.t(), B, T)
            for t in (range(T) if d == 0 else reversed(range(T))):
                h = product.acc(S[t], h)
                activate(B, H, relu, h.data_ptr(), 2 * H)
        ctx.mark_dirty(GX)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(h0_f, h0_r, w_f, w_r, GX)
        ctx.B, ctx.relu = B, relu
        return GX, G[T - 1, :, :H].clone(), G[0, :, H:].clone()

    @staticmethod
    @hand_written
    def backward(ctx, dY, dh_f, dh_r):
        h0_f, h0_r, w_f, w_r, Y = ctx.saved_tensors
        B, relu, needs = ctx.B, ctx.relu, ctx.needs_input_grad
        H, T = w_f.shape[0], Y.shape[0] // B
        backward = step_kernels.rnn_rows(Y.dtype)[1]
        dY = buffers.contiguous(dY, Y)
        dA = buffers.empty_like(Y)
        grads = []
        for d, (h0, w, dh_n) in enumerate(((h0_f, w_f, dh_f), (h0_r, w_r, dh_r))):
            half = slice(d * H, (d + 1) * H)
            Yd, dYd, dAd = (t.view(T, B, 2 * H)[..., half] for t in (Y, dY, dA))
            carry = carry_from(dh_n, h0)
            product = StepProduct(w, B, T)
            for t in (reversed(range(T)) if d == 0 else range(T)):
                backward(B, H, relu, carry.data_ptr(), dYd[t].data_ptr(), Yd[t].data_ptr(), dAd[t].data_ptr(), 2 * H)
                product.into(carry, dAd[t])
            dw = None
            if needs[3 + d]:  # Σ_t dA_tᵀ h_{t-1} forwards, h_{t+1} backwards; h0 at the first step taken
                first, rest, prev = (0, slice(1, T), slice(0, T - 1)) if d == 0 else (T - 1, slice(0, T - 1), slice(1, T))
                dw = (weight_grad(dAd[first], h0) if T == 1 else
                      weight_grad(dAd[first], h0, dAd[rest].reshape(-1, H), Yd[prev].reshape(-1, H)))
            grads.append((carry, dw))
        (dh0_f, dw_f), (dh0_r, dw_r) = grads
        return dA, dh0_f, dh0_r, dw_f, dw_r, None, None


def rnn_bidirectional_layer(X: Tensor, h0_f: Tensor, h0_r: Tensor, w_f: LayerWeights, w_r: LayerWeights,
                            relu: bool) -> tuple[Tensor, Tensor, Tensor]:
    """A bidirectional vanilla RNN layer without lengths or noise, where the compiled step runs
    (``bidirectional_applies``): X (T, B, I) → Y (T, B, 2H), h_n of each direction (B, H). One projection
    GEMM for both directions, and one for ∂L/∂X (K = 2H) instead of two and a sum."""
    T, B, I = X.shape
    W = torch.cat([w_f.w_ih, w_r.w_ih])
    bias = None if w_f.b_ih is None else torch.cat([w_f.b_ih + w_f.b_hh, w_r.b_ih + w_r.b_hh])
    GX = project(X.reshape(T * B, I), W, bias)
    Y, h_f, h_r = BidirectionalRNNFunction.apply(GX, h0_f, h0_r, w_f.w_hh, w_r.w_hh, B, relu)
    return Y.view(T, B, -1), h_f, h_r


def bidirectional_applies(X: Tensor, w_f: LayerWeights, noises) -> bool:
    """Whether ``rnn_bidirectional_layer`` can run this layer: the compiled step loaded and takes X's device
    and dtype (the weights' too), and no recurrent dropout or zoneout mask."""
    return (step_kernels.usable(X) and X.dtype == w_f.w_hh.dtype
            and all(n.recurrent is None and n.zone_h is None for n in noises))
