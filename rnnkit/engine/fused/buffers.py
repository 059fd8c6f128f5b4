"""Reused CPU buffers for the fused engine: a training step without page faults.

A training step allocates the same large blocks every time (gates, states and their gradients for all
steps: (N, k·H) floats, megabytes each). glibc's malloc serves such blocks with fresh pages from the
kernel and returns them when they are freed, so every step pays a page fault per 4 KiB it touches
(about 10 % of a fused training step at B64 H512). The fused engine takes its own large blocks from
this pool instead. A block is handed out again only when nothing else refers to its memory:

- no tensor, view, saved-for-backward value or gradient: torch counts the C++ references to each
  storage, and the pool asks that count (its own storage object is the only one it may see);
- no Python reference to that storage object (``y.untyped_storage()`` kept by the caller, a saved-tensor
  hook that packs storages): CPython's reference count of the object, which the pool owns from the start;
- no other process: a block moved to shared memory (``share_memory_()``, a tensor sent through
  ``torch.multiprocessing`` or out of a DataLoader worker) leaves the pool for good.

What the pool keeps: the blocks it handed out, looked up by exact size and dtype. When a request finds
no free block of its size, it allocates one and lets go of the free blocks that went stale (shapes
that changed: a new sequence length or batch size), those not handed out during the last 2·L requests,
L being the longest gap seen between two requests of one size — a training step's length — at least
``STALE_TAKES`` and at most ``MAX_CYCLE``; then of the least recently used blocks beyond ``MAX_BLOCKS``
blocks or ``MAX_BYTES`` in all. With fixed shapes what stays is the step's working set, which the step
would allocate again anyway (every block is handed out again within a step, so none goes stale; a step
of more than 2·``MAX_CYCLE`` requests — a very deep stack — keeps allocating some); with shapes that
change every batch, the blocks of up to the last 2·``MAX_CYCLE`` requests (measured: a GRU of hidden
128, batch 16, lengths 60–159, held 142 MiB after 40 steps, against nothing without the pool). After
training it is memory held until ``release_buffers()`` or the end of the process. Only CPU blocks of at least ``MIN_BYTES`` are
pooled (smaller ones come from malloc's heap without page faults; CUDA has torch's caching allocator).

Some large results come from torch's kernels that have no ``out=`` (the input side's layer norm and its
gradient; oneDNN's inner product, ``products.linear``), fresh every step; copying them into pooled blocks
cost what their page faults did. ``hold`` keeps the last ``HOLD_BLOCKS`` of them referenced (at most
``HOLD_BYTES``) a while after their users let go: glibc hands a large block freed at the top of its heap
back to the kernel, while one freed below blocks still in use stays in the heap, where the next step's
result of that size finds it. Measured in separate processes (two threads; how many faults a process
takes depends on how its heap happens to lie): a layer-normalised training step at B32 T100 H128, two
layers, went from 980–4,700 page faults to 0–200 (GRU, 3–11 % faster) and from 1,600–6,300 to 0–200
(LSTM, 2–10 %); a vanilla RNN's at B64 H512 from 0–6,400 to 0–1 (up to 3 %). A/B in one process,
where the two share a heap: 1.00–1.02×.

``RNNKIT_BUFFER_POOL=0`` in the environment (read at import) turns the pool and ``hold`` off. A forked
child starts with an empty pool.
"""
from __future__ import annotations

import collections
import math
import os
import sys
import threading

import torch
from torch import Tensor

__all__ = ["contiguous", "empty", "empty_like", "hold", "release_buffers"]

MIN_BYTES = 256 * 2**10
STALE_TAKES = 32
MAX_CYCLE = 128
MAX_BLOCKS = 256
MAX_BYTES = 2 * 2**30
HOLD_BLOCKS = 8
HOLD_BYTES = 256 * 2**20

_use_count = getattr(torch._C, "_storage_Use_Count", None)  # None: this torch cannot say, so no pool
_CPU = torch.device("cpu")


class _Block:
    """A pooled block: the pool holds only its storage's Python object (so ``y.untyped_storage()`` hands
    that same object to anyone who asks, and the pool sees them in its reference count)."""

    __slots__ = ("storage", "nbytes", "last_take")

    def __init__(self, storage: torch.UntypedStorage, nbytes: int, last_take: int) -> None:
        self.storage, self.nbytes, self.last_take = storage, nbytes, last_take

    def free(self) -> bool:
        # The pool's own references: in C++ the storage object's; in Python this slot (as calibrated below).
        if sys.getrefcount(self.storage) != _OWN_REFS:
            return False
        storage = self.storage
        return _use_count(storage._cdata) == 1 and storage.nbytes() == self.nbytes

    def shared(self) -> bool:
        return self.storage.is_shared()


def _own_refs() -> int:
    """What ``sys.getrefcount(block.storage)`` says when only the pool holds the storage object (the
    interpreter's own count of the call's argument varies between Python versions, so it is measured)."""
    block = _Block(torch.empty(1, device="cpu").untyped_storage(), 4, 0)
    return sys.getrefcount(block.storage)


_OWN_REFS = _own_refs()


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[tuple[int, torch.dtype], list[_Block]] = {}  # the blocks of each size
        self._asked: dict[tuple[int, torch.dtype], int] = {}  # each size's latest request
        self._cycle = STALE_TAKES  # L above
        self._takes = 0
        self._count = 0
        self._bytes = 0
        self.misses = 0  # requests that allocated (for tests, and for anyone checking the pool settles)

    def take(self, shape: tuple[int, ...], numel: int, dtype: torch.dtype) -> Tensor:
        """A contiguous CPU tensor of ``shape`` (``numel`` elements, contents undefined), on a block that is
        reused when one is free. It is not a view of the block (autograd would treat it as one): it is a
        tensor set on the block's storage, whose reference marks the block as in use."""
        with self._lock:
            self._takes += 1
            key = (numel, dtype)
            previous = self._asked.get(key)
            if previous is not None:
                self._cycle = max(self._cycle, min(self._takes - previous, MAX_CYCLE))
            self._asked[key] = self._takes
            same = self._sizes.setdefault(key, [])
            for block in same:
                if block.free():
                    if block.shared():  # other processes may read it: never again
                        self._drop({id(block)})
                        break
                    block.last_take = self._takes
                    return _on(block.storage, shape, dtype)
            self.misses += 1
            nbytes = numel * dtype.itemsize
            block = _Block(torch.empty(numel, dtype=dtype, device=_CPU).untyped_storage(), nbytes, self._takes)
            self._sizes.setdefault(key, []).append(block)
            self._count += 1
            self._bytes += nbytes
            self._trim()
            return _on(block.storage, shape, dtype)

    def _trim(self) -> None:
        """After a miss: drop free blocks not taken lately and blocks in shared memory, then the least
        recently taken over the limits (a block in use that is dropped stays with its users and is freed
        with them)."""
        blocks = sorted((b for same in self._sizes.values() for b in same), key=lambda b: b.last_take)
        over = max(0, self._count - MAX_BLOCKS)
        excess = self._bytes - MAX_BYTES
        drop = set()
        for b in blocks:
            stale = self._takes - b.last_take >= 2 * self._cycle and b.free()
            if stale or over > 0 or excess > 0 or b.shared():
                drop.add(id(b))
                over, excess = over - 1, excess - b.nbytes
        self._drop(drop)

    def _drop(self, ids: set[int]) -> None:
        if not ids:
            return
        for key, same in list(self._sizes.items()):
            kept = [b for b in same if id(b) not in ids]
            if kept:
                self._sizes[key] = kept
            else:
                del self._sizes[key]
                self._asked.pop(key, None)
        self._count = sum(len(same) for same in self._sizes.values())
        self._bytes = sum(b.nbytes for same in self._sizes.values() for b in same)

    def release(self) -> None:
        with self._lock:
            self._sizes.clear()
            self._asked.clear()
            self._cycle = STALE_TAKES
            self._count = self._bytes = 0

    def after_fork(self) -> None:
        """In a forked child: a new lock (another thread may have held the parent's at the fork) and no
        blocks (the parent's threads that used them do not exist here)."""
        self._lock = threading.Lock()
        self._sizes, self._asked, self._cycle = {}, {}, STALE_TAKES
        self._count = self._bytes = 0

    def blocks(self) -> list[torch.UntypedStorage]:
        """The storages held now (for tests and for anyone asking what the pool keeps)."""
        with self._lock:
            return [b.storage for same in self._sizes.values() for b in same]

    def nbytes(self) -> int:
        return self._bytes


def _on(storage: torch.UntypedStorage, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    return torch.empty(0, dtype=dtype, device=_CPU).set_(storage, 0, shape)


class _Held:
    """The last few fresh results ``hold`` was given, oldest first, as tensors of their own (``detach``: the
    storage is kept, not the autograd graph around the result)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tensors: collections.deque[Tensor] = collections.deque()
        self._bytes = 0

    def add(self, t: Tensor) -> None:
        nbytes = t.untyped_storage().nbytes()
        if nbytes > HOLD_BYTES:
            return
        with self._lock:
            self._tensors.append(t.detach())
            self._bytes += nbytes
            while len(self._tensors) > HOLD_BLOCKS or self._bytes > HOLD_BYTES:
                self._bytes -= self._tensors.popleft().untyped_storage().nbytes()

    def release(self) -> None:
        with self._lock:
            self._tensors.clear()
            self._bytes = 0

    def after_fork(self) -> None:
        self.__init__()


_pool = _Pool()
_held = _Held()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.after_fork)
    os.register_at_fork(after_in_child=_held.after_fork)
_enabled = _use_count is not None and os.environ.get("RNNKIT_BUFFER_POOL", "1") != "0"


def empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``like.new_empty(shape)`` (on ``like``'s device, in its dtype), from the pool when ``like`` is on
    the CPU and the block is large."""
    numel = math.prod(shape)
    if not _enabled or like.device.type != "cpu" or numel * like.dtype.itemsize < MIN_BYTES:
        return like.new_empty(shape)
    return _pool.take(shape, numel, like.dtype)


def empty_like(t: Tensor) -> Tensor:
    return empty(tuple(t.shape), t)


def hold(t: Tensor) -> Tensor:
    """``t``, a large CPU result that a kernel without ``out=`` allocated fresh, kept referenced until
    ``HOLD_BLOCKS`` later ones have been held (module docstring: its memory then stays in malloc's heap
    for the next step). Small, CUDA and (pool off) every tensor pass untouched."""
    if _enabled and t.device.type == "cpu" and t.untyped_storage().nbytes() >= MIN_BYTES:
        _held.add(t)
    return t


def release_buffers() -> None:
    """Let go of every block the fused engine keeps for reuse (those still in use stay with their users),
    and of the results ``hold`` keeps."""
    _pool.release()
    _held.release()


def contiguous(grad: Tensor | None, like: Tensor) -> Tensor:
    """An incoming output gradient as a contiguous tensor shaped like ``like``: zeros for None (autograd
    passes None for an unused output), a pooled copy where it is not contiguous (``y.sum()`` sends an
    expanded one), else itself."""
    if grad is None:
        return empty_like(like).zero_()
    if grad.is_contiguous():
        return grad
    return empty_like(like).copy_(grad)
