"""The input projection of all steps, GX = X Wᵀ + b, as one GEMM into a block of ``buffers``' pool.

Autograd's own ``addmm`` would allocate GX and, in the backward pass, ∂L/∂X fresh every step (page
faults on megabytes); this Function does the same products into reused blocks:

    backward:  ∂L/∂X = ∂L/∂GX · W;   ∂L/∂W = (∂L/∂GX)ᵀ · X;   ∂L/∂b = Σ_rows ∂L/∂GX
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import buffers


def refuse_double_backward() -> None:
    """The backward passes are written by hand and are not themselves differentiable: say so instead of
    returning a silently wrong second derivative (backward runs with grad mode on only for create_graph)."""
    if torch.is_grad_enabled():
        raise RuntimeError("rnnkit's fused engine does not support second derivatives (create_graph=True); "
                           "use engine='reference' (autograd through the cells) or engine='native'")


class _Projection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        # X (N, I), W (G, I), b (G,) or None → GX (N, G)
        GX = buffers.empty((X.shape[0], W.shape[0]), X)
        if b is None:
            torch.mm(X, W.t(), out=GX)
        else:
            torch.addmm(b, X, W.t(), out=GX)
        ctx.save_for_backward(X, W)
        return GX

    @staticmethod
    def backward(ctx, dGX: Tensor):
        refuse_double_backward()
        X, W = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dX = torch.mm(dGX, W, out=buffers.empty_like(X)) if needs[0] else None
        dW = dGX.t() @ X if needs[1] else None
        db = dGX.sum(0) if needs[2] else None
        return dX, dW, db


def project(X: Tensor, W: Tensor, b: Tensor | None = None) -> Tensor:
    """X (N, I) · Wᵀ (I, G) + b → (N, G), differentiable in all three."""
    return _Projection.apply(X, W, b)
