"""A seeded train/validation split for whatever a reader returns (used when no ``--valid`` file is given)."""
from __future__ import annotations

import random
from typing import Any

import torch

from .captions import Captions
from .readers import Series


#: How far (characters) the text holdout's cut may move back to the start of a word.
WORD_CUT_REACH = 64


def _valid_count(n: int, valid_fraction: float) -> int:
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"holdout: valid_fraction must be between 0 and 1, got {valid_fraction}")
    if n < 2:
        raise ValueError(f"holdout: need at least 2 examples to split, got {n}")
    return min(n - 1, max(1, round(n * valid_fraction)))


def holdout(data: Any, valid_fraction: float = 0.1, *, seed: int = 0) -> tuple[Any, Any]:
    """``(train, valid)`` of the same kind as ``data``, with about ``valid_fraction`` of it held out
    (at least one item on each side).

    * text (``str``): the last characters are held out — one contiguous tail, as usual for
      language models (a random set of characters would leak context); a cut that falls inside a word
      moves back to the word's start, so no word is split in two (a word-level vocabulary would learn
      the fragments as words) — at most ``WORD_CUT_REACH`` characters back: text without spaces
      (Chinese, say) keeps its cut;
    * a ``Series``: the last time steps — the future is what a forecaster is judged on;
    * a list of examples, ``Captions``, or a tuple of parallel columns — tensors sharing their first
      dimension, or lists of one length, such as ``(texts, labels)`` — : a seeded random subset
      (``random.Random(seed)``); both parts keep the original order (and each column its type).
    Any other tuple is an error (its items would be taken for examples). ``seed`` must be >= 0
    (``random.Random`` takes a negative seed's absolute value).
    """
    if seed < 0:
        raise ValueError(f"holdout: seed must be >= 0, got {seed}")
    if isinstance(data, str):
        cut = len(data) - _valid_count(len(data), valid_fraction)
        if not data[cut].isspace():  # (a cut before a space is between two words already)
            start = cut
            while start > 1 and cut - start < WORD_CUT_REACH and not data[start - 1].isspace():
                start -= 1  # back towards the word's start (any Unicode space ends a word)
            if data[start - 1].isspace():
                cut = start
        return data[:cut], data[cut:]
    if isinstance(data, Series):
        k = _valid_count(len(data.values), valid_fraction)
        return Series(data.values[:-k], data.columns), Series(data.values[-k:], data.columns)
    if isinstance(data, tuple) and not _is_columns(data):
        kinds = sorted({type(t).__name__ for t in data})
        raise ValueError(f"holdout: a tuple must hold parallel columns (tensors or lists of one length), got "
                         f"{len(data)} item(s) of type {', '.join(kinds) or 'none'}; pass a list of examples instead")
    n = len(data.captions) if isinstance(data, Captions) else len(data[0]) if _is_columns(data) else len(data)
    k = _valid_count(n, valid_fraction)
    held = sorted(random.Random(seed).sample(range(n), k))
    kept = sorted(set(range(n)) - set(held))
    if isinstance(data, Captions):
        return tuple(Captions(data.images[idx], [data.captions[i] for i in idx]) for idx in (kept, held))
    if _is_columns(data):
        return tuple(tuple(t[torch.tensor(idx)] if isinstance(t, torch.Tensor) else [t[i] for i in idx] for t in data)
                     for idx in (kept, held))
    return [data[i] for i in kept], [data[i] for i in held]


def _is_columns(data: Any) -> bool:
    """A tuple of tensors sharing their first dimension, or of lists of one length."""
    if not (isinstance(data, tuple) and data and all(isinstance(t, (torch.Tensor, list)) for t in data)):
        return False
    return len({len(t) for t in data}) == 1
