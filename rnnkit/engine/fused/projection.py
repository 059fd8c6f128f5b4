"""The input side of all steps: the projection GX = X Wᵀ + b as one GEMM into a block of ``buffers``'
pool, and (layer-normalised cells) its layer norm.

Autograd's own ``addmm`` would allocate GX and, in the backward pass, ∂L/∂X fresh every step (page
faults on megabytes); this Function runs the same kernels into reused blocks, or oneDNN's inner product
where ``products.linear`` finds it faster:

    projection backward:  ∂L/∂X = ∂L/∂GX · W;   ∂L/∂W = (∂L/∂GX)ᵀ · X;   ∂L/∂b = Σ_rows ∂L/∂GX
"""
from __future__ import annotations

import contextlib
import functools

import torch
from torch import Tensor

from ..precision import own_precision
from . import buffers
from .products import linear, weight_grad


def refuse_double_backward() -> None:
    """The backward passes are written by hand and are not themselves differentiable: say so instead of
    returning a silently wrong second derivative (backward runs with grad mode on only for create_graph)."""
    if torch.is_grad_enabled():
        raise RuntimeError("rnnkit's fused engine does not support second derivatives (create_graph=True); "
                           "use engine='reference' (autograd through the cells) or engine='native'")


def _batched(g: Tensor) -> bool:
    f = torch._C._functorch  # (is_grads_batched runs torch's legacy vmap; torch.func.vmap the other kind)
    return f.is_legacy_batchedtensor(g) or f.is_batchedtensor(g)


def refuse_batched_backward(grads) -> None:
    """The hand-written backward passes write into their own blocks (``out=``, in place), which vmap cannot
    batch: a batched backward — ``torch.autograd.grad(..., is_grads_batched=True)``, or
    ``torch.autograd.functional.jacobian``/``hessian`` with ``vectorize=True`` — is refused by name instead of
    failing inside functorch."""
    if any(g is not None and _batched(g) for g in grads):
        raise RuntimeError("rnnkit's fused engine cannot run a batched backward pass (is_grads_batched=True, or "
                           "jacobian/hessian with vectorize=True): its backward pass is written by hand; run the "
                           "forward pass with engine='reference' (autograd through the cells) or engine='native'")


def hand_written(backward):
    """For a Function's ``backward`` written by hand: refuses second derivatives and batched backward passes
    (above), and runs with
    ``torch.autocast`` off on the gradients' device, as the forward pass did (``backward()`` called inside
    an autocast region would otherwise cast its products to the lower precision; ``torch.amp.custom_bwd``
    does this for one fixed device type)."""

    @functools.wraps(backward)
    def run(ctx, *grads):
        refuse_double_backward()
        refuse_batched_backward(grads)
        first = next((g for g in grads if g is not None), None)
        with contextlib.nullcontext() if first is None else own_precision(first):
            return backward(ctx, *grads)

    return run


class _Projection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        # X (N, I), W (G, I), b (G,) or None → GX (N, G)
        ctx.save_for_backward(X, W)
        GX = linear(X, W, b)
        if GX is not None:
            return buffers.hold(GX)  # (fresh from oneDNN)
        GX = buffers.empty((X.shape[0], W.shape[0]), X)
        return torch.mm(X, W.t(), out=GX) if b is None else torch.addmm(b, X, W.t(), out=GX)

    @staticmethod
    @hand_written
    def backward(ctx, dGX: Tensor):
        X, W = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dX = None
        if needs[0]:
            dX = linear(dGX, W.t())
            if dX is None:
                dX = torch.mm(dGX, W, out=buffers.empty_like(X))
            else:
                buffers.hold(dX)
        dW = weight_grad(dGX, X) if needs[1] else None
        db = dGX.sum(0) if needs[2] else None
        return dX, dW, db


def project(X: Tensor, W: Tensor, b: Tensor | None = None) -> Tensor:
    """X (N, I) · Wᵀ (I, G) + b → (N, G), differentiable in all three."""
    return _Projection.apply(X, W, b)


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A: Tensor, gain: Tensor, bias: Tensor, eps: float) -> Tensor:
        Y, mean, rstd = torch.native_layer_norm(A, (A.shape[1],), gain, bias, eps)
        ctx.save_for_backward(A, mean, rstd, gain, bias)
        return buffers.hold(Y)

    @staticmethod
    @hand_written
    def backward(ctx, dY: Tensor):
        A, mean, rstd, gain, bias = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dA, d_gain, d_bias = torch.ops.aten.native_layer_norm_backward(dY, A, (A.shape[1],), mean, rstd, gain, bias,
                                                                       [needs[0], needs[1], needs[2]])
        if dA is not None:
            buffers.hold(dA)
        return dA, d_gain, d_bias, None


def layer_norm(A: Tensor, gain: Tensor, bias: Tensor, eps: float) -> Tensor:
    """The layer norm of A (N, G) over its G columns, ∗ gain (G,) + bias (G,), differentiable in all three:
    torch's own kernels, whose results they allocate, kept a while by ``buffers.hold``. (Their ``out=``
    overloads are not kernels of their own: they allocate the result and copy it into the given block, a
    copy more and the same page faults.)"""
    return _LayerNorm.apply(A, gain, bias, eps)
