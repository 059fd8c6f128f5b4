"""Fused LSTM: forward recurrence and hand-written backpropagation through time.

Internal layout (``input_projection``): torch's gate order ``i, f, g, o``, with the g pre-activation
scaled by 2 (its rows of W_ih, W_hh and the bias, or the layer norms' gains and biases) so that one
sigmoid covers the whole (b, 4H) block: tanh(a) = 2σ(2a) − 1, and ``sigmoid_`` is several times
cheaper than ``tanh_`` on CPU. Autograd maps gradients back through that scale.
The input projection of all steps, ``GX = X W_ihᵀ + b`` (and its layer norm), is one GEMM done by the
caller under autograd; this function receives GX, overwrites it with the gates G (GX is its own
buffer, and a fresh one would cost page faults) and returns ∂L/∂GX.

Forward, per step t over its b live rows, m the recurrent dropout mask, z_h/z_c the zoneout keeps::

    G_t = σ(GX_t + (m∗h_{t-1}) W_hhᵀ)      (recurrent part layer-normalised with layer_norm)
    g = 2g − 1;  C̃_t = f ∗ C_{t-1} + i ∗ g;  r_t = o ∗ tanh(C̃_t)   (tanh(LN(C̃_t)) with layer_norm)
    h̃_t = r_t (or r_t W_hrᵀ);  h_t = h̃_t + z_h ∗ (h_{t-1} − h̃_t);  C_t = C̃_t + z_c ∗ (C_{t-1} − C̃_t)

Backward, per step, only what depends on the recurrence (every other factor is computed for all
steps at once before the loop)::

    dh = dh_carry + dY_t;  dr = dh(1 − z_h) (W_hr);  dC̃ = dc_carry(1 − z_c) + dr ∗ o ∗ (1 − tanh²)
    dG_t = [dC̃·g·σ', dC̃·C_{t-1}·σ', dC̃·i·(1 − g²)/2, dr·tanh·σ']
    dc_carry = dC̃ ∗ f + dc_carry z_c;   dh_carry = m ∗ (dG_t W_hh) + dh z_h

Without dropout or zoneout on h the step writes the step before's dh directly:
dh_{t-1} = dY_{t-1} + dG_t W_hh in one ``addmm``.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.ops import aten

from .. import native
from ..types import LN_EPS, LayerWeights, Noise
from . import buffers, step_kernels
from .layout import Layout
from .products import StepProduct
from .projection import hand_written, layer_norm, project


def double_gate(w: Tensor, gates: int, k: int) -> Tensor:
    """``w`` (gates·H, ...) or (gates·H,) with the rows of gate ``k`` multiplied by 2, under autograd (the
    sigmoid form of tanh takes the doubled pre-activation). One product by a vector of per-gate factors: a
    concatenation of the blocks, faster forwards, was up to twice as slow forwards and backwards at H = 512,
    its gradient coming back through a full-size block per piece."""
    H = w.shape[0] // gates
    scale = torch.ones(gates, dtype=w.dtype, device=w.device)
    scale[k] = 2.0
    return (w.reshape(gates, H, -1) * scale.view(gates, 1, 1)).reshape(w.shape)


def _scale_g(w: Tensor) -> Tensor:
    """Rows in torch's gate order ``i, f, g, o``, the g block (the third quarter) multiplied by 2."""
    return double_gate(w, 4, 2)


def input_projection(X: Tensor, w: LayerWeights) -> tuple[Tensor, dict]:
    """GX (N, 4H) in the internal layout, and the internal recurrent parameters for the kernel."""
    bias = None if w.b_ih is None else _scale_g(w.b_ih + w.b_hh)
    if not w.layer_norm:
        return project(X, _scale_g(w.w_ih), bias), dict(w_hh=_scale_g(w.w_hh))
    # With layer norm the ×2 goes on the normalised values (gain and bias), not on the weights,
    # because normalisation would undo a scale applied before it.
    A = project(X, w.w_ih)
    ln_bias = _scale_g(w.ln_ih_b) if bias is None else _scale_g(w.ln_ih_b) + bias  # both per column
    GX = layer_norm(A, _scale_g(w.ln_ih_w), ln_bias, LN_EPS)
    return GX, dict(w_hh=w.w_hh, ln_h_w=_scale_g(w.ln_hh_w), ln_h_b=_scale_g(w.ln_hh_b), ln_c_w=w.ln_c_w,
                    ln_c_b=w.ln_c_b)


def ln_affine_grads(dy: Tensor, x: Tensor, stats: Tensor, gain: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """A layer norm's gain and bias gradients over all rows at once: Σ dy ∗ (x − mean) ∗ rstd and Σ dy,
    in one pass of torch's own kernel (no temporaries). ``stats`` (2, N, 1): each row's mean and 1/std."""
    _, d_gain, d_bias = aten.native_layer_norm_backward(dy, x, gain.shape, stats[0], stats[1], gain, bias,
                                                        [False, True, True])
    return d_gain, d_bias


def carry_to_previous(carry: Tensor, da: Tensor, w_hh: StepProduct, mask, kept) -> None:
    """∂L/∂h_{t-1} of a step's b live rows into ``carry`` (b, H), in place: m ∗ (da W_hh) + dh ∗ z_h, with
    ``w_hh`` the product by W_hh, m the recurrent mask's rows (b, H) and ``kept`` = dh ∗ z_h, the part
    zoneout passed straight to h_{t-1} (either may be None)."""
    if mask is None:
        w_hh.into(carry, da, kept)
        return
    w_hh.into(carry, da).mul_(mask)
    if kept is not None:
        carry.add_(kept)


def carry_from(grad: Tensor | None, state: Tensor) -> Tensor:
    """A backward loop's carry (B, H), updated in place: a contiguous copy of the final state's gradient, or
    zeros (None: h_n unused). Contiguous because the compiled step reads rows with unit stride, and a
    gradient can arrive with its hidden units apart in memory (a loss on ``h_n.transpose(1, 2)``)."""
    if grad is None:
        return torch.zeros(state.shape, dtype=state.dtype, device=state.device)
    return grad.clone(memory_format=torch.contiguous_format)


def overwrote_input(ctx, gx: Tensor) -> None:
    """Tell autograd that ``forward`` wrote its results into its input ``gx`` (its own buffer, so a training
    step touches one fresh (N, G·H) block less: fresh pages cost page faults). ``forward`` must return
    ``gx`` as its last output, which is not differentiable; unused output gradients arrive as None."""
    ctx.mark_dirty(gx)
    ctx.mark_non_differentiable(gx)
    ctx.set_materialize_grads(False)


def keep_rows(layout: Layout, z, like: Tensor, width: int) -> list:
    """Each step's zoneout keeps as a (b, width) matrix for the compiled step: the packed keeps' per-step
    rows, or for a float (eval mode's expectation) one row of it repeated (row stride 0); None: [None, …]."""
    if z is None or isinstance(z, Tensor):
        return layout.split(z)
    return layout.heads(like.new_full((1, width), z).expand(layout.B, width))


def sigmoid_grad_into(s: Tensor, out: Tensor) -> Tensor:
    """out = s (1 − s), σ' at the pre-activation whose sigmoid is s, as s − s² in one pass."""
    return torch.addcmul(s, s, s, value=-1, out=out)


def scaled_one_minus_square(x: Tensor, scale: float, out: Tensor | None = None) -> Tensor:
    """scale (1 − x²) — tanh' at the argument whose tanh is x, times ``scale`` — in one pass over x (these
    all-steps factors are memory-bound: each pass over an (N, H) block costs as much as the arithmetic)."""
    return torch.addcmul(x.new_tensor(scale), x, x, value=-scale, out=out)


def tanh_into(x: Tensor, out: Tensor, two: Tensor, one: Tensor) -> Tensor:
    """out = tanh(x) as 2σ(2x) − 1: four cheap passes beat one ``tanh`` several times over on CPU."""
    return torch.mul(x, two, out=out).sigmoid_().mul_(two).sub_(one)


class LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, GX, h0, c0, w_hh, w_hr, ln_h_w, ln_h_b, ln_c_w, ln_c_b, mask, zone_h, zone_c,
                layout: Layout):
        # GX (N, 4H) packed; h0 (B, P), c0 (B, H) sorted; w_hh (4H, P); w_hr (P, H) or None;
        # ln_h_* (4H,), ln_c_* (H,) or None; mask (B, P) or None; zone_h (N, P), zone_c (N, H), float or None.
        H = w_hh.shape[0] // 4
        N = GX.shape[0]
        ln_h, ln_c = ln_h_w is not None, ln_c_w is not None
        G = GX  # the activated gates of every step, in place of their input parts
        CT = buffers.empty((N, H), GX)  # C̃_t, the cell's own new state
        C = CT if zone_c is None else buffers.empty((N, H), GX)  # C_t after zoneout
        TC = buffers.empty((N, H), GX)  # tanh(C̃_t) (of its layer norm with ln_c)
        R = buffers.empty((N, H), GX) if w_hr is not None else None  # o ∗ tanh(·) before the projection
        Y = buffers.empty((N, w_hh.shape[1]), GX)
        AH = buffers.empty((N, 4 * H), GX) if ln_h else None  # recurrent part before its layer norm
        stats_h: list[Tensor] = []  # per step: mean and 1/std of each row's recurrent part
        stats_c: list[Tensor] = []  # and of its C̃_t
        product = StepProduct(w_hh.t(), layout.B, len(layout.steps))
        projection = StepProduct(w_hr.t(), layout.B, len(layout.steps)) if w_hr is not None else None
        per = layout.split  # per-step views, made once: [G_t for every step], ...
        G_s, CT_s, TC_s, Y_s, R_s, AH_s = map(per, (G, CT, TC, Y, R, AH))
        C_s = CT_s if zone_c is None else per(C)
        zh_s, zc_s = per(zone_h), per(zone_c)
        hp_s, cp_s = layout.previous_views(h0, Y_s), layout.previous_views(c0, C_s)  # each step's live rows
        mask_s = None if mask is None else layout.heads(mask)
        if ln_h:
            product.begin(AH)
        # The element-wise work of a step in one compiled call where it loaded (step_kernels.py), else
        # torch's operators below: the same computation.
        # (it reads h_{t-1} and C_{t-1} as rows with unit stride: an initial state given otherwise takes torch's)
        compiled = step_kernels.usable(GX) and h0.stride(-1) == 1 and c0.stride(-1) == 1
        if compiled:
            stats_h = GX.new_empty((2, N, 1)) if ln_h else None
            stats_c = GX.new_empty((2, N, 1)) if ln_c else None
            sh_s, sc_s = layout.split_stats(stats_h), layout.split_stats(stats_c)
            out_s = Y_s if w_hr is None else R_s
            # zoneout in the step too, but for h after a projection (applied to the projected output below)
            zkh_s = keep_rows(layout, zone_h if w_hr is None else None, GX, H)
            zkc_s, cz_s = keep_rows(layout, zone_c, GX, H), (C_s if zone_c is not None else per(None))
        else:
            two, one = GX.new_tensor(2.0), GX.new_tensor(1.0)
            if ln_c:  # tanh(u) = 2σ(2u) − 1: the cell norm's gain and bias give 2u directly
                ln_c_w2, ln_c_b2 = ln_c_w * 2, ln_c_b * 2
            i_s, f_s, g_s, o_s = (per(G[:, k * H : (k + 1) * H]) for k in range(4))
        for k in range(len(layout.steps)):
            hp, cp = hp_s[k], cp_s[k]
            h_in = hp if mask is None else hp * mask_s[k]
            G_t = G_s[k]
            if compiled:
                a = product.store(AH_s[k], h_in) if ln_h else product.acc(G_t, h_in)
                step_kernels.lstm_forward(G_t, a if ln_h else None, ln_h_w, ln_h_b, sh_s and sh_s[k], cp, CT_s[k],
                                          ln_c_w, ln_c_b, sc_s and sc_s[k], TC_s[k], out_s[k], zkh_s[k], hp, zkc_s[k],
                                          cz_s[k], LN_EPS)
                if w_hr is not None:
                    projection.into(Y_s[k], R_s[k])
                    if zone_h is not None:
                        Y_s[k].lerp_(hp, zh_s[k])
                continue
            if ln_h:
                a = product.store(AH_s[k], h_in)
                a_ln, mean, rstd = torch.native_layer_norm(a, (4 * H,), ln_h_w, ln_h_b, LN_EPS)
                stats_h += (mean, rstd)
                G_t.add_(a_ln)
            else:
                product.acc(G_t, h_in)
            G_t.sigmoid_()
            i, f, g, o = i_s[k], f_s[k], g_s[k], o_s[k]
            g.mul_(two).sub_(one)  # tanh of the candidate cell state
            ct = torch.mul(f, cp, out=CT_s[k]).addcmul_(i, g)
            if ln_c:
                u2, mean, rstd = torch.native_layer_norm(ct, (H,), ln_c_w2, ln_c_b2, LN_EPS)
                stats_c += (mean, rstd)
                tc = torch.sigmoid(u2, out=TC_s[k]).mul_(two).sub_(one)
            else:
                tc = tanh_into(ct, TC_s[k], two, one)
            y = Y_s[k]
            if w_hr is None:
                torch.mul(o, tc, out=y)
            else:
                projection.into(y, torch.mul(o, tc, out=R_s[k]))
            if zone_h is not None:  # h = h̃ + z (h_prev − h̃)
                y.lerp_(hp, zh_s[k])
            if zone_c is not None:
                torch.lerp(ct, cp, zc_s[k], out=C_s[k])
        if not compiled:  # (2, N, 1)
            stats_h = torch.stack((torch.cat(stats_h[0::2]), torch.cat(stats_h[1::2]))) if ln_h else None
            stats_c = torch.stack((torch.cat(stats_c[0::2]), torch.cat(stats_c[1::2]))) if ln_c else None
        ctx.layout = layout
        ctx.zones = (zone_h, zone_c)
        overwrote_input(ctx, GX)
        ctx.save_for_backward(h0, c0, w_hh, w_hr, ln_h_w, ln_h_b, ln_c_w, ln_c_b, mask, G, CT, C, TC, R, Y, AH,
                              stats_h, stats_c)
        return Y, layout.final(Y), layout.final(C), G

    @staticmethod
    @hand_written
    def backward(ctx, dY, dh_n, dc_n, _):
        (h0, c0, w_hh, w_hr, ln_h_w, ln_h_b, ln_c_w, ln_c_b, mask, G, CT, C, TC, R, Y, AH, stats_h,
         stats_c) = ctx.saved_tensors
        zone_h, zone_c = ctx.zones
        layout: Layout = ctx.layout
        H = C.shape[1]
        dY = buffers.contiguous(dY, Y)
        dh_carry = carry_from(dh_n, h0)
        dc_carry = carry_from(dc_n, c0)

        # Everything that does not depend on the recurrence, for all steps at once.
        # (In place, into their own buffers: each fresh (N, H) temporary costs its page faults.)
        i, f, g, o = G.split(H, 1)
        OD = scaled_one_minus_square(TC, 1.0, out=buffers.empty_like(TC)).mul_(o)  # ∂r/∂(tanh argument): o (1 − tanh²)
        M = buffers.empty_like(G)  # dG = M ∗ [dC̃, dC̃, dC̃, dr]
        Mi, Mf, Mg, Mo = M.split(H, 1)
        sigmoid_grad_into(i, Mi).mul_(g)  # g i (1 − i)
        sigmoid_grad_into(f, Mf).mul_(layout.previous(c0, C))  # C_{t-1} f (1 − f)
        sigmoid_grad_into(o, Mo).mul_(TC)  # tanh(·) o (1 − o)
        scaled_one_minus_square(g, 0.5, out=Mg).mul_(i)  # i (1 − g²) / 2
        compiled = step_kernels.usable(G)  # (every block it reads here is the engine's own, contiguous)
        keep_c = None if zone_c is None or compiled else 1 - zone_c

        dG = M  # each step's factors are used once, then replaced by its gate gradients
        # ∂L/∂(h_in W_hhᵀ): with layer norm each step's is copied into a block of its own (one copy as a
        # concatenation after the loop would make, but of a short-lived result: kept in a list, those cost
        # page faults)
        dA = buffers.empty_like(AH) if AH is not None else dG
        # ∂L/∂h̃_t: kept for all steps only where the projection's weight gradient needs it
        dHt = buffers.empty_like(Y) if w_hr is not None else None
        dU = buffers.empty_like(TC) if ln_c_w is not None else None  # ∂L/∂LN(C̃_t)
        per = layout.split  # per-step views, made once
        dY_s, OD_s, M_s, dU_s, f_s = map(per, (dY, OD, M, dU, f))
        dHt_s = per(dHt) if dHt is not None else layout.heads(Y.new_empty(layout.B, Y.shape[1]))
        CT_s, AH_s, dA_s = per(CT), per(AH), per(dA)
        zh_s, zc_s, kc_s = per(zone_h), per(zone_c), per(keep_c)
        stc_s, sth_s = layout.split_stats(stats_c), layout.split_stats(stats_h)
        dh_s, dc_s = layout.heads(dh_carry), layout.heads(dc_carry)  # the carries of each step's live rows
        mask_s = None if mask is None else layout.heads(mask)
        # Without dropout or zoneout on h a step also adds the step before's dY into its GEMM's output.
        fold = mask is None and zone_h is None
        product = StepProduct(w_hh, layout.B, len(layout.steps))
        projection = StepProduct(w_hr, layout.B, len(layout.steps)) if w_hr is not None else None
        # zoneout's keeps as matrices for the compiled step; h's there only without a projection (its dr is
        # dh̃ then), with ``kept`` a scratch block for dh̃ ∗ z_h
        zone_h_in_step = compiled and zone_h is not None and w_hr is None
        if compiled:
            zkc_s = keep_rows(layout, zone_c, G, H)
            zkh_s = keep_rows(layout, zone_h if zone_h_in_step else None, G, H)
            kept_s = layout.heads(Y.new_empty(layout.B, H)) if zone_h_in_step else per(None)
        # (the compiled step sums the norms' gain and bias gradients as it goes, while their rows are in cache)
        affine_c = step_kernels.affine_accumulator(H, G, compiled and ln_c_w is not None)
        affine_h = step_kernels.affine_accumulator(4 * H, G, compiled and AH is not None)
        dht = None  # ∂L/∂h̃ of step k when the step after computed it
        for k in reversed(range(len(layout.steps))):
            if dht is None:
                dht = torch.add(dh_s[k], dY_s[k], out=dHt_s[k])
            kept = None
            if zone_h is not None and not zone_h_in_step:
                kept = dht * zh_s[k]  # what zoneout passes straight to h_{t-1}
                dht.sub_(kept)  # ∗ (1 − z_h)
            dr = dht if w_hr is None else projection.new(dht)  # (b, H)
            if compiled:  # (∂L/∂C̃ from the step after, × (1 − z_c) with zoneout, is formed in the step)
                step_kernels.lstm_backward(dr, dc_s[k], OD_s[k], M_s[k], f_s[k], dc_s[k], zkc_s[k], CT_s[k] if ln_c_w
                                           is not None else None, ln_c_w, stc_s and stc_s[k], dU_s[k], AH_s[k], ln_h_w,
                                           sth_s and sth_s[k], dA_s[k], affine_c, affine_h, zkh_s[k], kept_s[k])
                da = M_s[k] if AH is None else dA_s[k]
                kept = kept_s[k] if zone_h_in_step else kept
            else:
                dc_future = dc_s[k] if zone_c is None else dc_s[k] * kc_s[k]
                if dU is None:
                    dc = torch.addcmul(dc_future, dr, OD_s[k])
                else:
                    du = torch.mul(dr, OD_s[k], out=dU_s[k])
                    dln = aten.native_layer_norm_backward(du, CT_s[k], (H,), *stc_s[k], ln_c_w, ln_c_b,
                                                          [True, False, False])[0]
                    dc = dln.add_(dc_future)
                dG_t = M_s[k].mul_(torch.cat((dc, dc, dc, dr), 1))  # one pass over the gates
                if zone_c is None:
                    torch.mul(dc, f_s[k], out=dc_s[k])
                else:
                    dc_s[k].mul_(zc_s[k]).addcmul_(dc, f_s[k])
                da = dG_t
                if AH is not None:
                    da = dA_s[k].copy_(aten.native_layer_norm_backward(dG_t, AH_s[k], (4 * H,), *sth_s[k], ln_h_w,
                                                                       ln_h_b, [True, False, False])[0])
            if fold and k > 0:  # ∂L/∂h̃_{t-1} = dY_{t-1} + da W_hh
                # (Without a projection dHt_s[k − 1] and dht share one (B, P) scratch block: dht was last
                # read for dr above, so it may be overwritten now.)
                out, dY_prev = layout.join_previous(k, dHt_s, dY_s, dh_s)
                product.into(out, da, dY_prev)
                dht = dHt_s[k - 1]
                continue
            carry_to_previous(dh_s[k], da, product, None if mask is None else mask_s[k], kept)
            dht = None

        dln_h_w = dln_h_b = dln_c_w = dln_c_b = None
        if affine_h is not None:
            dln_h_w, dln_h_b = affine_h.to(G.dtype)
        elif AH is not None:
            dln_h_w, dln_h_b = ln_affine_grads(dG, AH, stats_h, ln_h_w, ln_h_b)
        if affine_c is not None:
            dln_c_w, dln_c_b = affine_c.to(G.dtype)
        elif dU is not None:
            dln_c_w, dln_c_b = ln_affine_grads(dU, CT, stats_c, ln_c_w, ln_c_b)
        needs = ctx.needs_input_grad
        dw_hh = layout.previous_product(dA, h0, Y, mask) if needs[3] else None
        dw_hr = dHt.t() @ R if w_hr is not None and needs[4] else None
        return (dG, dh_carry, dc_carry, dw_hh, dw_hr, dln_h_w, dln_h_b, dln_c_w, dln_c_b,
                None, None, None, None)


#: Fewest leading all-alive steps worth handing to torch's kernel (``native_prefix``).
NATIVE_PREFIX_MIN_STEPS = 4


def prefix_steps(dense: int) -> int:
    """How many of ``dense`` leading all-alive steps ``lstm_layer`` hands to torch's kernel: all but the last
    (each sequence keeps at least one step for the tail), or none when that is fewer than the minimum."""
    t0 = dense - 1
    return t0 if t0 >= NATIVE_PREFIX_MIN_STEPS else 0


def lstm_layer(X: Tensor, h0: Tensor, c0: Tensor, w: LayerWeights, layout: Layout, noise: Noise,
               native_prefix: bool = False):
    """Packed (N, I) → (Y (N, P), h_n, c_n) in sorted order.

    ``native_prefix`` (plain layer only; ``dispatch`` decides): the leading steps that every sequence
    runs form a dense (t0, B) block, which torch's own LSTM kernel (oneDNN on CPU in float32) runs
    faster than any step loop written in Python; the rest runs here from the state it reaches.
    Autograd joins the two, so gradients flow through both."""
    t0 = prefix_steps(layout.dense_steps())
    plain = noise.recurrent is None and noise.zone_h is None and noise.zone_c is None
    if native_prefix and plain and not w.layer_norm and w.w_hr is None and t0:
        B, n0 = layout.B, t0 * layout.B
        Y0, (h, c) = native.run_layer("lstm", X[:n0].view(t0, B, -1), (h0, c0), w)
        Y1, h_n, c_n = lstm_layer(X[n0:], h, c, w, layout.tail(t0), noise)
        return torch.cat((Y0.view(n0, -1), Y1)), h_n, c_n
    GX, p = input_projection(X, w)
    mask = None if noise.recurrent is None else layout.sort(noise.recurrent)
    Y, h_n, c_n, _ = LSTMFunction.apply(GX, h0, c0, p["w_hh"], w.w_hr, p.get("ln_h_w"), p.get("ln_h_b"),
                                        p.get("ln_c_w"), p.get("ln_c_b"), mask, layout.pack_noise(noise.zone_h),
                                        layout.pack_noise(noise.zone_c), layout)
    return Y, h_n, c_n
