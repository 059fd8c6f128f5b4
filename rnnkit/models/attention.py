"""Attention of a decoder over the encoder's outputs (Luong et al. 2015, Bahdanau et al. 2015).

For a decoder state h_t (the query) and the encoder outputs s_1 … s_S (the memory) of one source::

    score(h_t, s_j) = h_tᵀ s_j                         dot        (Luong)
                    = h_tᵀ W_a s_j                     general    (Luong)
                    = v_aᵀ tanh(W_q h_t + W_k s_j + b)   additive   (Bahdanau; Luong's "concat")
    a_tj = softmax_j score(h_t, s_j)      over the source's real positions only (padding gets 0)
    c_t  = Σ_j a_tj s_j                   the context vector

Dot is free of parameters but needs the query and memory to share a size; general learns how they
align; additive scores through a small hidden layer of ``attention_size`` units. The parts that do not
depend on the query — W_a s_j, W_k s_j + b, the padding mask — are computed once per batch of
sources (``prepare``), so a decoding step costs one batched product (plus a tanh for additive).

Shapes: B batch, T query steps, S source steps; query (B, T, Hq), memory (B, S, Hm), mask (B, S)
True at real positions; context (B, T, Hm), weights (B, T, S).
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

#: Attention kinds a seq2seq model can use; "none" means no attention.
AttentionKind = Literal["none", "additive", "dot", "general"]
ATTENTIONS = ("none", "additive", "dot", "general")


class Source(NamedTuple):
    """What the scores need from one batch of sources, computed once (``Attention.prepare``):
    ``memory`` (B, S, Hm); ``keys`` (B, S, ·) — s (dot), W_a s (general), W_k s + b (additive);
    ``blocked`` (B, 1, S), True at padding."""

    memory: Tensor
    keys: Tensor
    blocked: Tensor


class Attention(nn.Module):
    """``Attention(kind, query_size, memory_size, attention_size=None)`` with kind in
    ``additive | dot | general``; ``attention_size`` is the additive score's hidden width (default
    ``query_size``)."""

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        if kind not in ATTENTIONS[1:]:
            raise ValueError(f"Attention: kind must be one of {ATTENTIONS[1:]}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(f"Attention: dot scores need query_size == memory_size, got {query_size} and "
                             f"{memory_size}")
        self.kind = kind
        if kind == "general":
            self.W_a = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "additive":
            A = attention_size or query_size
            self.W_q = nn.Linear(query_size, A, bias=False)
            self.W_k = nn.Linear(memory_size, A)  # its bias is the b of the score
            self.v_a = nn.Linear(A, 1, bias=False)

    def prepare(self, memory: Tensor, mask: Tensor) -> Source:
        """``memory`` (B, S, Hm) and ``mask`` (B, S) → the ``Source`` that ``attend`` reads, once per batch
        of sources rather than once per decoding step. Padded positions of ``memory`` are zeroed, so that
        whatever they hold (even inf or NaN) reaches no context: their weight 0 times inf would be NaN."""
        memory = memory.masked_fill(~mask.unsqueeze(2), 0.0)
        if self.kind == "general":
            keys = self.W_a(memory)  # (B, S, Hq)
        elif self.kind == "additive":
            keys = self.W_k(memory)  # (B, S, A)
        else:
            keys = memory
        return Source(memory, keys, ~mask.unsqueeze(1))

    def attend(self, query: Tensor, source: Source) -> tuple[Tensor, Tensor]:
        """``query`` (B, T, Hq) → context (B, T, Hm), weights (B, T, S)."""
        if self.kind == "additive":
            hidden = torch.tanh(self.W_q(query).unsqueeze(2) + source.keys.unsqueeze(1))  # (B, T, S, A)
            scores = self.v_a(hidden).squeeze(3)  # (B, T, S)
        else:
            scores = torch.bmm(query, source.keys.transpose(1, 2))  # (B, T, S)
        weights = scores.masked_fill(source.blocked, float("-inf")).softmax(dim=2)
        return torch.bmm(weights, source.memory), weights

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``query`` (B, T, Hq), ``memory`` (B, S, Hm), ``mask`` (B, S) → context (B, T, Hm), weights (B, T, S)."""
        return self.attend(query, self.prepare(memory, mask))
