"""One-to-one: ``FeedForwardBaseline``, a multilayer perceptron with no recurrence, so a report can show
what a recurrent model adds over a model that sees no order.

    one item:   features (B, I) ─ MLP ─→ logits (B, C)
    a sequence: tokens (B, T) ─ Embedding ─→ (B, T, E) (or features (B, T, I))
                ─ pool over the real steps (mean | max) ─→ (B, E) ─ MLP ─→ logits (B, C)   "bag of embeddings"
                ─ or, with pooling="none", the MLP on every step alone ─→ (B, T, C)         per-token baseline

Mean or max pooling throws away the order of the steps: the model can count, not read. The MLP is
``Linear → activation → dropout`` per entry of ``hidden_sizes``, then ``Linear`` to the C outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import (InputLayer, check_ids, check_input_choice, check_not_empty, padding_mask, pool_over_time,
                     prepare_lengths)
from .config import ConfiguredModel, check_dropout, check_positive, check_types, inference

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass(kw_only=True)
class FeedForwardBaselineConfig:
    """Everything needed to rebuild a ``FeedForwardBaseline``.

    num_classes: outputs C (required).
    vocab_size: token ids in [0, vocab_size) are embedded; None to feed feature vectors instead.
    input_size: features per item (or per step) when the inputs are vectors; None with vocab_size.
    embed_size: embedding width (64). padding_idx: embedding row kept at zero (None).
    hidden_sizes: width of each hidden layer ((128,); () is a linear model).
    activation: relu | tanh | gelu ("relu").
    pooling: how a sequence becomes one item — mean | max over its real steps, or none: every step is
      an item of its own ("mean"). Single feature vectors (B, I) need no pooling.
    dropout: after every hidden layer (0.0).
    """

    num_classes: int
    vocab_size: int | None = None
    input_size: int | None = None
    embed_size: int = 64
    padding_idx: int | None = None
    hidden_sizes: tuple[int, ...] = (128,)
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    pooling: Literal["mean", "max", "none"] = "mean"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_types(self)
        check_positive(self, "num_classes", "vocab_size", "input_size", "embed_size")
        if any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"FeedForwardBaselineConfig: hidden_sizes must all be > 0, got {self.hidden_sizes}")
        check_input_choice(self)
        check_dropout(self)


class FeedForwardBaseline(ConfiguredModel):
    """MLP baseline; keyword arguments are the fields of ``FeedForwardBaselineConfig``.

    ``forward(inputs, lengths=None)``: token ids (B, T) or features (B, T, I) → logits (B, C), or (B, T, C)
    with pooling="none"; feature vectors (B, I) → (B, C). ``lengths`` (B,) marks the real steps.
    ``loss(inputs, labels, lengths=None)``: mean cross-entropy; labels (B,), or (B, T) per step (values
    past a length ignored). ``predict`` → labels shaped like ``labels`` (−1 past each length).
    """

    config_class = FeedForwardBaselineConfig

    def build(self, c: FeedForwardBaselineConfig) -> None:
        self.input = InputLayer("FeedForwardBaseline", c.vocab_size, c.input_size, c.embed_size, c.padding_idx)
        layers: list[nn.Module] = []
        width = self.input.size
        for h in c.hidden_sizes:
            layers += [nn.Linear(width, h), _ACTIVATIONS[c.activation](), nn.Dropout(c.dropout)]
            width = h
        layers.append(nn.Linear(width, c.num_classes))
        self.mlp = nn.Sequential(*layers)

    def _logits(self, inputs, lengths) -> tuple[Tensor, Tensor | None]:
        """Logits (B, C) or (B, T, C), and the (B, T) mask of real steps for per-step output (else None)."""
        c, owner = self._config, "FeedForwardBaseline"
        dtype = self.mlp[-1].weight.dtype
        single = c.vocab_size is None and isinstance(inputs, Tensor) and inputs.dim() == 2
        if single:  # one feature vector per row: one-to-one
            if lengths is not None:
                raise ValueError(f"{owner}: lengths= is for sequences; inputs (B, input_size) are single items")
            return self.mlp(self.input(inputs, dtype, dims=1)), None
        x = self.input(inputs, dtype)  # (B, T, E)
        B, T = x.shape[:2]
        if T == 0:
            raise ValueError(f"{owner}: inputs has no time steps (shape {tuple(x.shape)})")
        mask = padding_mask(prepare_lengths(owner, lengths, B, T), B, T, x.device)  # (B, T)
        if c.pooling == "none":
            return self.mlp(x), mask
        return self.mlp(pool_over_time(x, mask, c.pooling)), None

    def forward(self, inputs: Tensor, lengths=None) -> Tensor:
        return self._logits(inputs, lengths)[0]

    def loss(self, inputs: Tensor, labels: Tensor, lengths=None) -> Tensor:
        check_not_empty("FeedForwardBaseline.loss", "inputs", inputs)
        logits, mask = self._logits(inputs, lengths)
        layout = "(B,) of class ids" if mask is None else "(B, T) of class ids"
        check_ids("FeedForwardBaseline.loss", "labels", labels, self._config.num_classes, logits.dim() - 1, layout,
                  "class ids", shape=logits.shape[:-1], mask=mask)
        labels = labels.to(logits.device)
        if mask is None:
            return F.cross_entropy(logits, labels)
        return F.cross_entropy(logits[mask], labels[mask])

    @inference
    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """Most likely class per item (B,), or per step (B, T) with −1 past each length; in eval mode."""
        logits, mask = self._logits(inputs, lengths)
        pred = logits.argmax(dim=-1)
        return pred if mask is None else pred.masked_fill(~mask, -1)
