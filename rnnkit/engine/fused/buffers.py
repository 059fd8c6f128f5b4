"""Reused CPU buffers for the fused engine: a training step without page faults.

A training step allocates the same large blocks every time (gates, states and their gradients for all
steps: (N, k·H) floats, megabytes each). glibc's malloc serves such blocks with fresh pages from the
kernel and returns them when they are freed, so every step pays a page fault per 4 KiB it touches
(about 10 % of a fused training step at B64 H512). The fused engine takes its own large blocks from
this pool instead: a block is handed out again only once nothing else refers to it — no tensor, view,
saved-for-backward value or gradient (torch counts the references to each storage; the pool asks that
count) — so reuse never changes a result.

What the pool keeps: each block it handed out, up to ``MAX_BLOCKS`` blocks and ``MAX_BYTES`` in all,
the least recently used dropped first. Between training steps that is the step's working set, which
the step would allocate again anyway; after training it is memory held until ``release_buffers()`` or
the end of the process. Only CPU blocks of at least ``MIN_BYTES`` are pooled (smaller ones come from
malloc's heap without page faults; CUDA has torch's caching allocator). ``RNNKIT_BUFFER_POOL=0`` in
the environment turns the pool off.
"""
from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict

import torch
from torch import Tensor

__all__ = ["empty", "empty_like", "release_buffers"]

MIN_BYTES = 256 * 2**10
MAX_BLOCKS = 64
MAX_BYTES = 4 * 2**30

_use_count = getattr(torch._C, "_storage_Use_Count", None)  # None: this torch cannot say, so no pool
_FREE = 2  # a block nobody else holds: the pool's own tensor and the storage object made to ask


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, Tensor] = OrderedDict()  # least recently used first
        self._bytes = 0

    def take(self, shape: tuple[int, ...], numel: int, dtype: torch.dtype) -> Tensor:
        """A contiguous CPU tensor of ``shape`` (``numel`` elements, contents undefined), on a block that is
        reused when one is free. It is not a view of the block (autograd would treat it as one): it is
        another tensor on the block's storage, whose reference marks the block as in use."""
        nbytes = numel * dtype.itemsize
        with self._lock:
            for key, block in self._blocks.items():
                if block.numel() == numel and block.dtype == dtype and self._free(block, nbytes):
                    self._blocks.move_to_end(key)
                    return _on(block, shape)
            block = torch.empty(numel, dtype=dtype)
            self._blocks[id(block)] = block
            self._bytes += nbytes
            while len(self._blocks) > MAX_BLOCKS or self._bytes > MAX_BYTES:
                _, old = self._blocks.popitem(last=False)
                self._bytes -= old.numel() * old.dtype.itemsize
            return _on(block, shape)

    @staticmethod
    def _free(block: Tensor, nbytes: int) -> bool:
        storage = block.untyped_storage()
        return storage.nbytes() == nbytes and _use_count(storage._cdata) == _FREE

    def release(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0


def _on(block: Tensor, shape: tuple[int, ...]) -> Tensor:
    return torch.empty(0, dtype=block.dtype).set_(block.untyped_storage(), 0, shape)


_pool = _Pool()
_enabled = _use_count is not None and os.environ.get("RNNKIT_BUFFER_POOL", "1") != "0"


def empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``like.new_empty(shape)``, from the pool when ``like`` is on the CPU and the block is large."""
    numel = math.prod(shape)
    if not _enabled or like.device.type != "cpu" or numel * like.dtype.itemsize < MIN_BYTES:
        return like.new_empty(shape)
    return _pool.take(shape, numel, like.dtype)


def empty_like(t: Tensor) -> Tensor:
    return empty(tuple(t.shape), t)


def release_buffers() -> None:
    """Let go of every block the fused engine keeps for reuse (those still in use stay with their users)."""
    _pool.release()


def contiguous(grad: Tensor | None, like: Tensor) -> Tensor:
    """An incoming output gradient as a contiguous tensor shaped like ``like``: zeros for None (autograd
    passes None for an unused output), a pooled copy where it is not contiguous (``y.sum()`` sends an
    expanded one), else itself."""
    if grad is None:
        return empty_like(like).zero_()
    if grad.is_contiguous():
        return grad
    return empty_like(like).copy_(grad)
