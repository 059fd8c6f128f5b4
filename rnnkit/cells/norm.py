"""Layer normalisation as the cells use it (Ba, Kiros & Hinton 2016): LN(a; γ, β) = γ ∗ (a − μ)/σ + β,
with μ and σ the mean and standard deviation over the last dimension (the gates of one example)."""
from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

EPS = 1e-5  # as torch.nn.LayerNorm


class LayerNormParams(NamedTuple):
    """Gains and biases: input part ``ih`` and recurrent part ``hh`` (G·H,), cell state ``c`` (H,; LSTM)."""

    ih_w: Tensor
    ih_b: Tensor
    hh_w: Tensor
    hh_b: Tensor
    c_w: Tensor | None = None
    c_b: Tensor | None = None


def ln(a: Tensor, gain: Tensor, bias: Tensor) -> Tensor:
    """(B, F) → (B, F), normalised over F."""
    return F.layer_norm(a, a.shape[-1:], gain, bias, EPS)
