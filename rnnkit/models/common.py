"""Pieces every model shares: the recurrent stack built from a cell name, padding masks, the top
layer's final state, and input checks whose errors name the argument and say expected vs got.

Shapes: B batch, T steps, H hidden size, D = 2 if bidirectional else 1.
"""
from __future__ import annotations

import math
import os
import sys
import warnings

import torch
from torch import Tensor, nn

from ..engine.dispatch import transforms_active
from ..layers import GRU, LSTM, RNN, RNNBase
from ..layers.checks import check_lengths



#: Special token ids the models assume by default — those every ``rnnkit.data`` vocabulary fixes
#: (``rnnkit.data.vocab``: 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos>; a test keeps the two in step), so a model
#: built with its defaults reads ids from rnnkit's tokenizers correctly.
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3

def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                   bidirectional: bool = False, engine: str = "auto", options: dict | None = None) -> RNNBase:
    """A batch-first rnnkit layer for ``cell`` in ``lstm | gru | rnn_tanh | rnn_relu``. ``dropout`` is
    the between-layer dropout, so it is passed only where there is more than one layer. ``options``: the
    layers' variant keywords (a config's ``RecurrentOptions.recurrent_options()``)."""
    kwargs = dict(num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional,
                  batch_first=True, engine=engine, **(options or {}))
    with warnings.catch_warnings(record=True) as caught:  # (the layer's warnings, re-issued at the user's line)
        warnings.simplefilter("always")
        if cell == "lstm":
            layer = LSTM(input_size, hidden_size, **kwargs)
        elif cell == "gru":
            layer = GRU(input_size, hidden_size, **kwargs)
        else:
            layer = RNN(input_size, hidden_size, nonlinearity=cell.removeprefix("rnn_"), **kwargs)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=user_stacklevel())
    return layer


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller of this function that points at the first
    frame outside rnnkit (and outside the dataclass machinery a config runs through): the user's line."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith(root) or frame.f_code.co_filename == "<string>"
                                 or frame.f_code.co_filename.endswith("dataclasses.py")):
        frame, level = frame.f_back, level + 1
    return level


def top_state(state, bidirectional: bool) -> Tensor:
    """The last layer's final hidden state, both directions side by side: h_n (L·D, B, H) — or an
    LSTM's (h_n, c_n) — → (B, D·H).

    With ``lengths`` the layers already stop each sequence at its last real step, so this is the
    state after the last real token (forward) and after the first one (backward)."""
    h_n = state[0] if isinstance(state, tuple) else state
    if bidirectional:
        return torch.cat([h_n[-2], h_n[-1]], dim=1)
    return h_n[-1]


def check_pad_is_not_eos(config) -> None:
    """A decoder's ``pad_id`` and ``eos_id`` must differ: the loss ignores ``pad_id`` targets, so an EOS
    equal to it would never be learned and generation would always run to its length limit."""
    if config.pad_id == config.eos_id:
        raise ValueError(f"{type(config).__name__}: pad_id and eos_id must differ (both {config.pad_id}): the loss "
                         f"ignores pad_id targets, so the model could never learn to end a sequence")


def never_output(config, device) -> Tensor:
    """The ids a decoder's generation must not emit: ``pad_id`` and ``bos_id`` (unless ``bos_id`` is also
    ``eos_id``; ``check_pad_is_not_eos``). Training never has them as targets, but nothing stops an
    untrained or weakly trained model from giving them mass, and a pad inside a generated row would read
    as its end."""
    ids = sorted({config.pad_id, config.bos_id} - {config.eos_id})
    return torch.tensor(ids, dtype=torch.long, device=device)


def exclude(log_probs: Tensor, ids: Tensor) -> Tensor:
    """``log_probs`` (N, V) with the columns ``ids`` set to −inf in place (not renormalised, as in
    fairseq: the kept tokens' log-probabilities stay the model's own, so a generated row's score equals
    its teacher-forced log-likelihood)."""
    return log_probs.index_fill_(1, ids, -math.inf)


def padding_mask(lengths: Tensor | None, batch: int, steps: int, device) -> Tensor:
    """(B, T) bool, True at real steps; all True when ``lengths`` is None."""
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    return torch.arange(steps, device=device) < lengths.to(device).unsqueeze(1)


def pool_over_time(x: Tensor, mask: Tensor, how: str) -> Tensor:
    """Mean or element-wise max of x (B, T, F) over the steps where mask (B, T) is True → (B, F)."""
    if how == "max":
        return x.masked_fill(~mask.unsqueeze(2), float("-inf")).amax(dim=1)
    return (x * mask.unsqueeze(2)).sum(1) / mask.sum(1, keepdim=True)


def prepare_lengths(owner: str, lengths, batch: int, steps: int) -> Tensor | None:
    """None, or lengths checked against the batch (int64 on the CPU, each in [1, T])."""
    return None if lengths is None else check_lengths(owner, lengths, batch, steps)


def check_not_empty(owner: str, name: str, batch) -> None:
    """A batch of no rows (B = 0): a mean loss over it would be NaN and a search has nothing to decode."""
    if isinstance(batch, Tensor) and batch.dim() >= 1 and batch.shape[0] == 0:
        raise ValueError(f"{owner}: {name} is an empty batch (shape {tuple(batch.shape)}): there is nothing to "
                         f"average or decode")


def check_has_targets(owner: str, name: str, scored: Tensor, pad_id: int) -> None:
    """``scored`` (a bool mask, or the targets that are not ``pad_id``) must hold at least one target: a
    batch whose targets are all padding has no mean loss (it was NaN, and an optimiser step made every weight
    NaN)."""
    if not bool(scored.any()):
        raise ValueError(f"{owner}: {name} has no target to score: every one is padding (pad id {pad_id}), so "
                         f"the mean loss would be NaN")


def _check_tensor(owner: str, name: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")


def _check_dims(owner: str, name: str, value: Tensor, dims: int, layout: str) -> None:
    if value.dim() != dims:
        raise ValueError(f"{owner}: {name} must be {dims}-D {layout}, got {value.dim()}-D with shape "
                         f"{tuple(value.shape)}")


def values_checkable() -> bool:
    """Whether a check may read the inputs' values: not inside a ``torch.func`` transform, where vmap refuses
    the data-dependent test (per-sample gradients, ``vmap(grad(loss))``); shapes and dtypes are still checked."""
    return not transforms_active()


def check_ids(owner: str, name: str, ids, upper: int, dims: int, layout: str, what: str = "ids",
              shape: tuple[int | None, ...] | None = None, mask: Tensor | None = None) -> Tensor:
    """``ids`` must be a torch.long tensor of ``dims`` dimensions (of ``shape``, when given; None matches any
    size) with every value in [0, upper) — at the positions where ``mask`` (broadcast to ``ids``) is
    True, when given (labels past a sequence's end are ignored). Inside a ``torch.func`` transform the values
    go unchecked (``values_checkable``)."""
    _check_tensor(owner, name, ids)
    if ids.dtype != torch.long:  # (other integer types failed later: in cross_entropy, decoding, F.embedding)
        hint = "; convert with .long()" if not (ids.dtype.is_floating_point or ids.dtype.is_complex) else ""
        raise TypeError(f"{owner}: {name} must hold integer {what} (torch.long), got dtype {ids.dtype}{hint}")
    _check_dims(owner, name, ids, dims, layout)
    if shape is not None and any(want is not None and want != got for want, got in zip(shape, ids.shape)):
        expected = "(" + ", ".join("*" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{owner}: {name} must have shape {expected}, got {tuple(ids.shape)}")
    if not values_checkable():
        return ids
    bad = (ids < 0) | (ids >= upper)
    if mask is not None:
        bad &= mask.to(ids.device)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        value = int(ids[where])
        raise ValueError(f"{owner}: {name} must hold {what} in [0, {upper}), got {value} at position {where}")
    return ids


def check_features(owner: str, name: str, x, dims: int, layout: str, size: int | None, dtype: torch.dtype) -> Tensor:
    """A floating tensor of ``dims`` dimensions, ``size`` features in the last one, no NaN or inf (the last
    unchecked inside a ``torch.func`` transform: ``values_checkable``)."""
    _check_tensor(owner, name, x)
    if not x.dtype.is_floating_point:
        raise TypeError(f"{owner}: {name} must be a floating-point tensor ({dtype}), got dtype {x.dtype}")
    _check_dims(owner, name, x, dims, layout)
    if size is not None and x.shape[-1] != size:
        raise ValueError(f"{owner}: {name} must have {size} features in its last dimension, got shape "
                         f"{tuple(x.shape)}")
    if values_checkable():
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            where = tuple(int(i) for i in (~finite).nonzero()[0])
            raise ValueError(f"{owner}: {name} must be finite, got {x[where].item()} at position {where}")
    return x.to(dtype)


def check_input_choice(cfg) -> None:
    """A model reads either token ids (``vocab_size`` set: an embedding in front) or feature vectors
    (``input_size`` set): exactly one of the two."""
    if (cfg.vocab_size is None) == (cfg.input_size is None):
        raise ValueError(f"{type(cfg).__name__}: set exactly one of vocab_size (token ids) and input_size "
                         f"(feature vectors), got vocab_size={cfg.vocab_size}, input_size={cfg.input_size}")
    if cfg.vocab_size is not None and cfg.padding_idx is not None and not 0 <= cfg.padding_idx < cfg.vocab_size:
        raise ValueError(f"{type(cfg).__name__}: padding_idx must be in [0, {cfg.vocab_size}), got {cfg.padding_idx}")
    if cfg.input_size is not None and cfg.padding_idx is not None:  # it would be ignored without a word
        raise ValueError(f"{type(cfg).__name__}: padding_idx belongs to the embedding of token ids (vocab_size); "
                         f"with feature vectors (input_size={cfg.input_size}) leave it None, got {cfg.padding_idx}")


class InputLayer(nn.Module):
    """What sits in front of a model: ``nn.Embedding`` for token ids (B, T) → (B, T, E), or a check of
    feature vectors (B, T, I) → the same tensor. ``size`` is E or I. ``forward(..., dims=1)`` takes one
    item per row instead: ids (B,) or features (B, I)."""

    def __init__(self, owner: str, vocab_size: int | None, input_size: int | None, embed_size: int,
                 padding_idx: int | None = None) -> None:
        super().__init__()
        self.owner = owner
        self.vocab_size, self.input_size = vocab_size, input_size
        if vocab_size is not None:
            self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=padding_idx)
            self.size = embed_size
        else:
            self.size = input_size

    def forward(self, inputs, dtype: torch.dtype, name: str = "inputs", dims: int = 2) -> Tensor:
        """Embedded tokens or checked features, as ``dtype`` (the model's parameters' dtype)."""
        if self.vocab_size is not None:
            layout = "(B, T)" if dims == 2 else "(B,)"
            check_ids(self.owner, name, inputs, self.vocab_size, dims, f"{layout} of token ids", "token ids")
            return self.embedding(inputs.to(self.embedding.weight.device))
        layout = "(B, T, input_size)" if dims == 2 else "(B, input_size)"
        return check_features(self.owner, name, inputs, dims + 1, layout, self.input_size, dtype)
