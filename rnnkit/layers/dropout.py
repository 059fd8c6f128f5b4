"""Dropout modules made for sequences, for use in models around the recurrent layers.

- ``LockedDropout(p)``: one mask per sequence, reused at every time step (Gal & Ghahramani 2016;
  the "locked" dropout of AWD-LSTM). Use it on embeddings or between custom layers.
- ``EmbeddingDropout(embedding, p)``: drops whole word types — every occurrence of a dropped word in
  a batch becomes the zero vector (Gal & Ghahramani 2016, §4.1) — instead of single coordinates.

Both scale kept values by 1/(1 − p) in training and are the identity in eval mode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_probability


class LockedDropout(nn.Module):
    """Input (T, B, F) — or (B, T, F) with ``batch_first`` — one mask (B, F) shared by every step."""

    def __init__(self, p: float = 0.5, batch_first: bool = False) -> None:
        super().__init__()
        self.p = check_probability("rnnkit.LockedDropout", "p", p)
        self.batch_first = batch_first

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.dim() != 3:
            raise ValueError(f"rnnkit.LockedDropout: expected a 3-D input (steps, batch, features), "
                             f"got shape {tuple(x.shape)}")
        shape = (x.shape[0], 1, x.shape[2]) if self.batch_first else (1, x.shape[1], x.shape[2])
        return x * x.new_empty(shape).bernoulli_(1 - self.p).div_(1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def embed_dropped(e: nn.Embedding, ids: Tensor, p: float, training: bool) -> Tensor:
    """``e(ids)`` with whole rows of its matrix dropped at rate ``p`` in training (one mask over the vocabulary
    per call, the kept rows scaled by 1/(1 − p)): every occurrence of a dropped word in the batch is zero."""
    if not training or p == 0:
        return e(ids)
    if e.max_norm is not None:  # renormalise the looked-up rows first, as nn.Embedding does, then drop
        with torch.no_grad():
            torch.embedding_renorm_(e.weight, ids.reshape(-1), e.max_norm, e.norm_type)
    keep = e.weight.new_empty(e.weight.shape[0], 1).bernoulli_(1 - p).div_(1 - p)
    return F.embedding(ids, e.weight * keep, e.padding_idx, None, e.norm_type, e.scale_grad_by_freq, e.sparse)


class EmbeddingDropout(nn.Module):
    """Wraps an ``nn.Embedding``: ids (any shape) → vectors (…, E), with whole rows of the embedding
    matrix dropped (one mask per forward call, over the vocabulary)."""

    def __init__(self, embedding: nn.Embedding, p: float = 0.1) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"rnnkit.EmbeddingDropout: expected an nn.Embedding, got {type(embedding).__name__}")
        self.embedding = embedding
        self.p = check_probability("rnnkit.EmbeddingDropout", "p", p)

    def forward(self, ids: Tensor) -> Tensor:
        return embed_dropped(self.embedding, ids, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
