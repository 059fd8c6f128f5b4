"""Batching: padding with lengths, length bucketing, contiguous streams for truncated BPTT, and
sliding windows over a series. Everything is batch-first.

Shapes (B batch, T longest sequence in the batch, L stream length, W window, H horizon, C channels):

* ``pad_batch(seqs)``                    → ``(ids (B, T) int64, lengths (B,) int64)``
* ``BucketBatcher(lengths, B)``          → iterates lists of example indices, one list per batch
* ``StreamBatches(ids (N,), B, bptt)``   → iterates ``(x (B, t), y (B, t))`` int64, ``t <= bptt``
* ``make_windows(values (T, C), W, H)``  → ``(inputs (N, W, C), targets (N, H, C))``
"""
from __future__ import annotations

import random
from typing import Iterator, Sequence

import torch
from torch import Tensor

from .vocab import PAD


def pad_batch(sequences: Sequence[Sequence[int] | Tensor], pad_id: int = PAD) -> tuple[Tensor, Tensor]:
    """Right-pad id sequences to the longest: ``(ids (B, T) int64, lengths (B,) int64)``.

    ``ids[b, lengths[b]:]`` is ``pad_id`` (0, ``<pad>``, by default). Empty sequences are allowed
    (length 0) but the recurrent layers need every length >= 1, so callers usually drop them.
    """
    if len(sequences) == 0:
        raise ValueError("pad_batch: expected at least one sequence, got none")
    seqs = []
    for b, s in enumerate(sequences):
        t = torch.as_tensor(s)
        not_ids = t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool
        if t.dim() != 1 or (not_ids and t.numel() > 0):  # ([] is an empty float tensor: fine)
            # (a 2-D item would be flattened and float ids truncated: refuse rather than guess)
            raise ValueError(f"pad_batch: sequence {b} must be a 1-D run of integer ids, got "
                             f"{t.dim()}-D with dtype {t.dtype}")
        seqs.append(t.to(torch.int64))
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)  # (B,)
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.int64)  # (B, T)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
    return ids, lengths


class BucketBatcher:
    """Batches of example indices grouped by length, so padding stays small.

    Each epoch: shuffle all indices (seeded by ``seed`` and ``epoch``), cut them into chunks of
    ``batch_size * bucket`` examples, sort each chunk by length (longest first), cut the chunk into
    batches, and shuffle the order of all batches. Batches are therefore nearly uniform in length
    but still random in content and order. With ``shuffle=False`` nothing is shuffled (for
    evaluation): chunks are taken in order and only sorted within. ``drop_last`` drops a final batch
    smaller than ``batch_size``.

    Works as a ``batch_sampler`` for ``torch.utils.data.DataLoader``; call :meth:`set_epoch` before
    each epoch (as with ``DistributedSampler``) for a fresh, reproducible order. For data-parallel
    training, give every rank ``list(batcher)[rank::world_size]``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket: int = 32,
        drop_last: bool = False,
    ):
        for name, value in (("batch_size", batch_size), ("bucket", bucket), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"BucketBatcher: {name} must be an int, got {value!r}")
        if batch_size < 1 or bucket < 1:
            raise ValueError(f"BucketBatcher: batch_size and bucket must be >= 1, got {batch_size} and {bucket}")
        if seed < 0:  # (random.Random takes a negative seed's absolute value: seed -1 would shuffle as seed 1)
            raise ValueError(f"BucketBatcher: seed must be >= 0, got {seed}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket, self.drop_last = bucket, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = len(self.lengths), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)  # distinct for every seed and epoch < 1,000,003
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        size = self.batch_size * self.bucket
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start : start + size], key=lambda i: -self.lengths[i])  # stable: ties keep order
            batches += [chunk[k : k + self.batch_size] for k in range(0, len(chunk), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()  # only the very last batch can be short: chunks are whole multiples of batch_size
        if self.shuffle:
            rng.shuffle(batches)
        return iter(batches)


class StreamBatches:
    """Contiguous streams for truncated BPTT language modelling (char-rnn style).

    The token stream ``ids`` (N,) is cut into ``batch_size`` equal rows, ``L = (N - 1) // B`` tokens
    each (the remainder is dropped): row ``b`` is ``ids[b*L : (b+1)*L]`` and its targets are the same
    stretch shifted by one token. Iterating yields chunks of ``bptt`` steps::

        x (B, t) int64   inputs,  t = bptt (the last chunk may be shorter unless drop_last)
        y (B, t) int64   next-token targets: y[b, s] = the token after x[b, s]

    Row ``b`` of chunk ``k + 1`` continues row ``b`` of chunk ``k``, so the model's final hidden state
    of one chunk — detached — is the right initial state for the next. A chunk covering all ``L``
    steps (``bptt >= L``) is ordinary full BPTT.
    """

    def __init__(self, ids: Sequence[int] | Tensor, batch_size: int, bptt: int, *, drop_last: bool = False):
        if isinstance(ids, str):
            raise TypeError("StreamBatches: ids must be token ids, got a str; encode the text first "
                            "(tokenizer.encode(text))")
        given = torch.as_tensor(ids)
        if given.dtype.is_floating_point or given.dtype.is_complex or given.dtype == torch.bool:
            raise TypeError(f"StreamBatches: ids must be integers, got dtype {given.dtype}")  # (not truncated)
        if given.dim() != 1:  # (a batched (B, T) tensor would be read as one stream, silently)
            raise ValueError(f"StreamBatches: ids must be one stream (N,), got shape {tuple(given.shape)}")
        ids = given.to(torch.int64)
        for name, value in (("batch_size", batch_size), ("bptt", bptt)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"StreamBatches: {name} must be an int, got {value!r}")
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"StreamBatches: batch_size and bptt must be >= 1, got {batch_size} and {bptt}")
        L = (len(ids) - 1) // batch_size
        if L < 1:
            raise ValueError(
                f"StreamBatches: {len(ids)} tokens are too few for {batch_size} streams (need at least {batch_size + 1})"
            )
        self.inputs = ids[: batch_size * L].view(batch_size, L)  # (B, L)
        self.targets = ids[1 : batch_size * L + 1].view(batch_size, L)  # (B, L)
        self.batch_size, self.bptt, self.drop_last = batch_size, bptt, drop_last
        if drop_last and L < bptt:
            raise ValueError(f"StreamBatches: with drop_last, streams of {L} steps give no chunk of bptt={bptt} "
                             f"(lower bptt or batch_size, or keep the short chunk)")

    @property
    def steps(self) -> int:
        """L, the length of each stream."""
        return self.inputs.shape[1]

    def __len__(self) -> int:
        return self.steps // self.bptt if self.drop_last else -(-self.steps // self.bptt)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for k in range(len(self)):
            s = slice(k * self.bptt, (k + 1) * self.bptt)
            yield self.inputs[:, s], self.targets[:, s]


def make_windows(values: Tensor, window: int, horizon: int = 1, *, stride: int = 1) -> tuple[Tensor, Tensor]:
    """Sliding windows over a series ``values`` (T, C) for forecasting:
    ``inputs (N, window, C)`` and the ``horizon`` steps after each, ``targets (N, horizon, C)``,
    with ``N = (T - window - horizon) // stride + 1`` (window ``i`` starts at ``i * stride``)."""
    if not isinstance(values, Tensor):
        raise TypeError(f"make_windows: values must be a tensor (T, C) (torch.as_tensor of an array), got "
                        f"{type(values).__name__}")
    if values.dim() != 2:
        raise ValueError(f"make_windows: expected values of shape (T, C), got {tuple(values.shape)}")
    if window < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"make_windows: window, horizon and stride must be >= 1, got {window}, {horizon}, {stride}")
    T = values.shape[0]
    if T < window + horizon:
        raise ValueError(f"make_windows: a series of {T} steps is shorter than window + horizon = {window + horizon}")
    span = values.unfold(0, window + horizon, stride).transpose(1, 2)  # (N, window + horizon, C)
    return span[:, :window].contiguous(), span[:, window:].contiguous()
