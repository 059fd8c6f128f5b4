"""Many-to-one: ``SequenceClassifier`` reads a whole sequence and predicts one label (sentiment of a
review, language of a name, whether a pattern occurs).

    tokens (B, T) ─ Embedding ─→ (B, T, E) ─ recurrent stack ─→ o (B, T, D·H) ─ pool over time ─→ (B, D·H)
    ─ Linear ─→ logits (B, C)          (or feature vectors (B, T, I) straight into the stack)

Pooling over the real steps of each sequence (``lengths``; padded steps never count):

- ``last``: the top layer's final state — after the last real token forward, after the first one backward;
- ``mean`` / ``max``: mean or element-wise max of o_t over t < length;
- ``attention``: learned additive attention (Yang et al. 2016): u_t = tanh(W o_t + b), a = softmax_t(v·u_t)
  over t < length, pooled = Σ_t a_t o_t; ``encode`` returns a (B, T) for plotting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import (InputLayer, check_ids, check_input_choice, check_not_empty, make_recurrent, padding_mask,
                     pool_over_time, prepare_lengths, top_state)
from .config import (Cell, ConfiguredModel, Engine, RecurrentOptions, check_dropout, check_positive, check_types,
                     inference)

Pooling = Literal["last", "mean", "max", "attention"]


@dataclass(kw_only=True)
class SequenceClassifierConfig(RecurrentOptions):
    """Everything needed to rebuild a ``SequenceClassifier``.

    num_classes: number of labels C (required).
    vocab_size: token ids in [0, vocab_size) are embedded; leave None to feed feature vectors instead.
    input_size: features per step when the inputs are vectors (B, T, input_size); None with vocab_size.
    embed_size: embedding width E (64). padding_idx: embedding row kept at zero (None).
    hidden_size: H per direction (128). num_layers: stacked layers (1). cell: lstm | gru | rnn_tanh | rnn_relu.
    bidirectional: read the sequence both ways (False). pooling: last | mean | max | attention ("last").
    attention_size: width of the attention's hidden layer (64; used by pooling="attention").
    dropout: on the embeddings, between layers and before the output layer (0.0).
    engine: the recurrent engine, "auto" | "reference" | "fused" | "native" ("auto").
    The recurrent layers' variant options (``RecurrentOptions``) are fields too.
    """

    num_classes: int
    vocab_size: int | None = None
    input_size: int | None = None
    embed_size: int = 64
    padding_idx: int | None = None
    hidden_size: int = 128
    num_layers: int = 1
    cell: Cell = "lstm"
    bidirectional: bool = False
    pooling: Pooling = "last"
    attention_size: int = 64
    dropout: float = 0.0
    engine: Engine = "auto"

    def __post_init__(self) -> None:
        check_types(self)
        self.check_recurrent_options(self.cell)
        check_positive(self, "num_classes", "vocab_size", "input_size", "embed_size", "hidden_size", "num_layers",
                       "attention_size")
        check_input_choice(self)
        check_dropout(self)


class AttentionPooling(nn.Module):
    """Additive attention over time with one learned query v: ``(o (B, T, F), mask (B, T)) → (B, F), a (B, T)``."""

    def __init__(self, features: int, attention_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(features, attention_size)
        self.query = nn.Linear(attention_size, 1, bias=False)

    def forward(self, o: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.tanh(self.proj(o))  # (B, T, A)
        scores = self.query(u).squeeze(2).masked_fill(~mask, float("-inf"))  # (B, T)
        a = torch.softmax(scores, dim=1)
        return torch.bmm(a.unsqueeze(1), o).squeeze(1), a


class SequenceClassifier(ConfiguredModel):
    """Many-to-one classifier; keyword arguments are the fields of ``SequenceClassifierConfig``.

    ``forward(inputs, lengths=None)`` → logits (B, C) for token ids (B, T) (or features (B, T, I));
    ``lengths`` (B,) marks each sequence's real steps in a padded batch.
    ``loss(inputs, labels, lengths=None)`` → mean cross-entropy, labels (B,) in [0, C).
    ``predict(inputs, lengths=None)`` → labels (B,). ``encode`` → pooled features and attention weights.
    """

    config_class = SequenceClassifierConfig

    def build(self, c: SequenceClassifierConfig) -> None:
        self.input = InputLayer("SequenceClassifier", c.vocab_size, c.input_size, c.embed_size, c.padding_idx)
        self.rnn = make_recurrent(c.cell, self.input.size, c.hidden_size, c.num_layers, c.dropout, c.bidirectional,
                                  c.engine, c.recurrent_options())
        features = c.hidden_size * (2 if c.bidirectional else 1)
        self.attention = AttentionPooling(features, c.attention_size) if c.pooling == "attention" else None
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(features, c.num_classes)

    def encode(self, inputs: Tensor, lengths=None) -> tuple[Tensor, Tensor | None]:
        """Pooled features (B, D·H), and the attention weights (B, T) (zero at padding) or None."""
        x = self.drop(self.input(inputs, self.head.weight.dtype))  # (B, T, E)
        B, T = x.shape[:2]
        if T == 0:
            raise ValueError(f"SequenceClassifier: inputs have no time steps (shape {tuple(inputs.shape)}); "
                             f"every sequence needs at least one")
        lengths = prepare_lengths("SequenceClassifier", lengths, B, T)
        o, state = self.rnn(x, lengths=lengths)  # o (B, T, D·H), zero past each length
        pooling = self._config.pooling
        if pooling == "last":
            return top_state(state, self._config.bidirectional), None
        mask = padding_mask(lengths, B, T, o.device)  # (B, T)
        if pooling == "attention":
            return self.attention(o, mask)
        return pool_over_time(o, mask, pooling), None

    def forward(self, inputs: Tensor, lengths=None) -> Tensor:
        """Logits (B, num_classes)."""
        pooled, _ = self.encode(inputs, lengths)
        return self.head(self.drop(pooled))

    def loss(self, inputs: Tensor, labels: Tensor, lengths=None) -> Tensor:
        """Mean cross-entropy against ``labels`` (B,) long in [0, num_classes)."""
        check_not_empty("SequenceClassifier.loss", "inputs", inputs)
        logits = self(inputs, lengths)
        check_ids("SequenceClassifier.loss", "labels", labels, self._config.num_classes, 1, "(B,) of class ids",
                  "class ids", shape=logits.shape[:1])
        return F.cross_entropy(logits, labels.to(logits.device))

    @inference
    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """The most likely class (B,), in eval mode (no dropout)."""
        return self(inputs, lengths).argmax(dim=1)
