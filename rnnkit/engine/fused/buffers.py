"""Reused CPU buffers for the fused engine: a training step without page faults.

A training step allocates the same large blocks every time (gates, states and their gradients for all
steps: (N, k·H) floats, megabytes each). glibc's malloc serves such blocks with fresh pages from the
kernel and returns them when they are freed, so every step pays a page fault per 4 KiB it touches
(about 10 % of a fused training step at B64 H512). The fused engine takes its own large blocks from
this pool instead: a block is handed out again only once nothing else refers to it — no tensor, view,
saved-for-backward value or gradient (torch counts the references to each storage; the pool asks that
count) — so reuse never changes a result.

What the pool keeps: the blocks it handed out, looked up by exact size and dtype. When a request finds
no free block of its size, it allocates one and lets go of the free blocks not handed out during the
last ``STALE_TAKES`` requests (shapes that changed: a new sequence length or batch size), then of the
least recently used blocks beyond ``MAX_BLOCKS`` blocks or ``MAX_BYTES`` in all. With fixed shapes that
is the step's working set, which the step would allocate again anyway; after training it is memory
held until ``release_buffers()`` or the end of the process. Only CPU blocks of at least ``MIN_BYTES``
are pooled (smaller ones come from malloc's heap without page faults; CUDA has torch's caching
allocator). ``RNNKIT_BUFFER_POOL=0`` in the environment turns the pool off.
"""
from __future__ import annotations

import math
import os
import threading

import torch
from torch import Tensor

__all__ = ["empty", "empty_like", "release_buffers"]

MIN_BYTES = 256 * 2**10
STALE_TAKES = 128
MAX_BLOCKS = 256
MAX_BYTES = 2 * 2**30

_use_count = getattr(torch._C, "_storage_Use_Count", None)  # None: this torch cannot say, so no pool
_FREE = 2  # a block nobody else holds: the pool's own tensor and the storage object made to ask


class _Block:
    __slots__ = ("tensor", "nbytes", "last_take")

    def __init__(self, tensor: Tensor, nbytes: int, last_take: int) -> None:
        self.tensor, self.nbytes, self.last_take = tensor, nbytes, last_take

    def free(self) -> bool:
        storage = self.tensor.untyped_storage()
        return storage.nbytes() == self.nbytes and _use_count(storage._cdata) == _FREE


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[tuple[int, torch.dtype], list[_Block]] = {}  # the blocks of each size
        self._takes = 0
        self._count = 0
        self._bytes = 0

    def take(self, shape: tuple[int, ...], numel: int, dtype: torch.dtype) -> Tensor:
        """A contiguous CPU tensor of ``shape`` (``numel`` elements, contents undefined), on a block that is
        reused when one is free. It is not a view of the block (autograd would treat it as one): it is
        another tensor on the block's storage, whose reference marks the block as in use."""
        with self._lock:
            self._takes += 1
            same = self._sizes.setdefault((numel, dtype), [])
            for block in same:
                if block.free():
                    block.last_take = self._takes
                    return _on(block.tensor, shape)
            block = _Block(torch.empty(numel, dtype=dtype), numel * dtype.itemsize, self._takes)
            same.append(block)
            self._count += 1
            self._bytes += block.nbytes
            self._trim()
            return _on(block.tensor, shape)

    def _trim(self) -> None:
        """After a miss: drop free blocks not taken lately, then the least recently taken over the limits
        (a block in use that is dropped stays with its users and is freed with them)."""
        blocks = sorted((b for same in self._sizes.values() for b in same), key=lambda b: b.last_take)
        over = max(0, self._count - MAX_BLOCKS)
        excess = self._bytes - MAX_BYTES
        drop = set()
        for b in blocks:
            stale = self._takes - b.last_take >= STALE_TAKES and b.free()
            if stale or over > 0 or excess > 0:
                drop.add(id(b))
                over, excess = over - 1, excess - b.nbytes
        if drop:
            for key, same in list(self._sizes.items()):
                kept = [b for b in same if id(b) not in drop]
                if kept:
                    self._sizes[key] = kept
                else:
                    del self._sizes[key]
            self._count -= len(drop)
            self._bytes = sum(b.nbytes for same in self._sizes.values() for b in same)

    def release(self) -> None:
        with self._lock:
            self._sizes.clear()
            self._count = self._bytes = 0

    def blocks(self) -> list[Tensor]:
        """The blocks held now (for tests and for anyone asking what the pool keeps)."""
        with self._lock:
            return [b.tensor for same in self._sizes.values() for b in same]

    def nbytes(self) -> int:
        return self._bytes


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
