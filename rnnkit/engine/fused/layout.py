"""The packed, length-sorted row layout the fused kernels run on.

Sequences are sorted longest first and their steps stored step after step (as in a
``PackedSequence``): step t owns rows ``[offset_t, offset_t + b_t)`` where b_t is the number of
sequences still running at t. Every per-step slice is then one contiguous block, the work is
proportional to the sum of the lengths (no masks, no padding rows), and the previous hidden state of
the b_t live sequences is the first b_t rows of the previous step's output, read in place.

A reverse direction is the same thing over each sequence read from its last valid step to its first,
so the kernels only ever run forwards; packing and unpacking do the reversal for free.
With no lengths and forward direction, packing is a zero-copy reshape.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .products import weight_grad


class Layout:
    """Maps a padded (T, B, ·) batch to packed rows (N, ·) and back.

    ``steps``: list of ``(offset, b_t)``; ``last``: (B,) packed row of each sorted sequence's final
    step; ``order``: (B,) sorted position → batch index, or None when no sort is needed.
    """

    def __init__(self, T: int, B: int, lengths: Tensor | None, reverse: bool, device: torch.device):
        self.T, self.B, self.reverse, self.device = T, B, reverse, device
        self.packed_input = False  # ``for_packed``: the data arrives, and leaves, as packed rows
        if lengths is None:
            self.order = self.inverse = self.index = None
            self.steps = [(t * B, B) for t in range(T)]
            self.N = T * B
            self.last = None  # the final step is the last B rows
            return
        lengths = lengths.to("cpu", torch.int64)
        sorted_len, order = torch.sort(lengths, descending=True, stable=True)
        tt, jj = self._sorted(sorted_len, order, device)
        time = sorted_len[jj] - 1 - tt if reverse else tt
        self.index = (time * B + order[jj]).to(device)

    def _sorted(self, sorted_len: Tensor, order: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Set the step structure from lengths sorted longest first; returns each packed row's (t, j)."""
        B = self.B
        T_eff = int(sorted_len[0])
        alive = torch.arange(T_eff, device="cpu").unsqueeze(1) < sorted_len.unsqueeze(0)  # (T_eff, B)
        batch_sizes = alive.sum(1)
        offsets = torch.cumsum(batch_sizes, 0) - batch_sizes
        self.steps = list(zip(offsets.tolist(), batch_sizes.tolist()))
        self.N = int(batch_sizes.sum())
        tt, jj = alive.nonzero(as_tuple=True)  # step-major: exactly the packed row order
        self._row_seq = jj.to(device)  # sorted sequence of each packed row
        self.last = (offsets[sorted_len - 1] + torch.arange(B, device="cpu")).to(device)
        # one step earlier in the same sequence: step 0 is the first B rows (every length ≥ 1); a later
        # row of sequence j reads row j of step t − 1
        self._prev_tail = (offsets[tt[B:] - 1] + jj[B:]).to(device)
        identity = bool(torch.equal(order, torch.arange(B, device="cpu")))
        self.order = None if identity else order.to(device)
        self.inverse = None if identity else torch.argsort(order).to(device)
        self._sorted_len, self._offsets = sorted_len, offsets
        return tt, jj

    @classmethod
    def for_packed(cls, batch_sizes: Tensor, sorted_indices: Tensor | None, reverse: bool,
                   device: torch.device) -> "Layout":
        """A layout for data that is already a ``PackedSequence``'s rows (N, ·): its row order *is* this
        layout's, so a forward pass needs no copy at all and a reverse one a single row permutation."""
        self = cls.__new__(cls)
        self.packed_input, self.device = True, device
        batch_sizes = batch_sizes.to("cpu", torch.int64)
        self.B, self.T, self.reverse, self.index = int(batch_sizes[0]), len(batch_sizes), reverse, None
        sorted_len = (batch_sizes.unsqueeze(0) > torch.arange(self.B, device="cpu").unsqueeze(1)).sum(1)  # (B,)
        order = torch.arange(self.B, device="cpu") if sorted_indices is None else sorted_indices.cpu()
        tt, jj = self._sorted(sorted_len, order, device)
        # reversing every sequence in place is an involution on the packed rows
        self.rows = (self._offsets[sorted_len[jj] - 1 - tt] + jj).to(device) if reverse else None
        return self

    def dense_steps(self) -> int:
        """How many leading steps every sequence runs (b_t = B): the shortest length."""
        return self.T if self.last is None else int(self._sorted_len[-1])

    def tail(self, t0: int) -> "Layout":
        """The layout of steps ``t0, t0 + 1, …`` alone (rows ``[t0·B, N)`` rebased to 0), for a caller that
        ran the first ``t0`` steps — which every sequence must outlive (``t0 < dense_steps()``) — some
        other way. The tail runs forwards over rows that are already in processing order."""
        if not 0 <= t0 < self.dense_steps():
            raise ValueError(f"tail({t0}): every sequence must have a step left (shortest has {self.dense_steps()})")
        if self.last is None:
            return Layout(self.T - t0, self.B, None, False, self.device)
        t = Layout.__new__(Layout)
        t.packed_input, t.reverse, t.index, t.rows, t.device = True, False, None, None, self.device
        t.B, t.T = self.B, self.T - t0
        t._sorted(self._sorted_len - t0, torch.arange(self.B), self.device)
        return t

    def split(self, t: Tensor | float | None) -> list:
        """Per-step views of a packed (N, ...) tensor, made by one call instead of a slice per step (the
        loops touch several buffers every step); a float or None is repeated for every step."""
        if not isinstance(t, Tensor):
            return [t] * len(self.steps)
        return list(t.split_with_sizes(self._step_sizes()))  # (not ``split``: its Python wrapper costs 3 µs)

    def heads(self, t: Tensor) -> list:
        """Per step, the view ``t[:b_t]`` of a (B, ...) carry — one view per distinct b_t, shared."""
        sizes = self._step_sizes()
        views = {b: t[:b] for b in set(sizes)}
        return [views[b] for b in sizes]

    def previous_views(self, first: Tensor, per_step: list) -> list:
        """Per step, the previous state of its b_t live rows, as views: ``first`` (B rows) at step 0 (b_0 = B,
        every length is ≥ 1), then the first b_t rows of step t − 1's block in ``per_step`` (that block
        itself when b_t did not change)."""
        sizes = self._step_sizes()
        out = [first]
        for k in range(1, len(sizes)):
            prev = per_step[k - 1]
            out.append(prev if sizes[k - 1] == sizes[k] else prev[: sizes[k]])
        return out

    def _step_sizes(self) -> list[int]:
        sizes = self.__dict__.get("_sizes")
        if sizes is None:
            sizes = self._sizes = [b for _, b in self.steps]
        return sizes

    def join_previous(self, k: int, out_s: list, dY_s: list, carry_s: list) -> tuple[Tensor, Tensor]:
        """For backward loops that write ∂L/∂h of step k − 1 straight from step k (``dY_{k-1}`` + step k's
        terms): the views of step k − 1's first b_k rows in ``out_s`` and ``dY_s``, which the caller fills.
        Rows b_k..b_{k-1} belong to sequences whose last step is k − 1 (step k does not reach them): they
        get ∂L/∂h_n (in ``carry_s``) + dY here."""
        sizes = self._step_sizes()
        b, b_prev = sizes[k], sizes[k - 1]
        out, dY = out_s[k - 1], dY_s[k - 1]
        if b == b_prev:
            return out, dY
        torch.add(carry_s[k - 1][b:], dY[b:], out=out[b:])
        return out[:b], dY[:b]

    def split_stats(self, stats: Tensor | None) -> list | None:
        """A layer norm's (2, N, 1) means and 1/stds → per step ``(mean, rstd)`` views; None stays None."""
        return None if stats is None else list(zip(self.split(stats[0]), self.split(stats[1])))

    # -- moving data in and out -----------------------------------------------------------------
    def pack(self, x: Tensor) -> Tensor:
        """(T, B, F) padded → (N, F) packed (for ``for_packed``: (N, F) rows → rows in processing order)."""
        if self.packed_input:
            return x if self.rows is None else x.index_select(0, self.rows)
        F = x.shape[-1]
        if self.index is None:
            return (x.flip(0) if self.reverse else x).reshape(self.N, F)
        return x.reshape(self.T * self.B, F).index_select(0, self.index)

    def unpack(self, y: Tensor) -> Tensor:
        """(N, F) packed → (T, B, F) padded, zeros past each sequence's length (``for_packed``: rows)."""
        if self.packed_input:
            return y if self.rows is None else y.index_select(0, self.rows)
        F = y.shape[-1]
        if self.index is None:
            y = y.view(self.T, self.B, F)
            return y.flip(0) if self.reverse else y
        out = y.new_zeros(self.T * self.B, F).index_copy(0, self.index, y)
        return out.view(self.T, self.B, F)

    def pack_noise(self, z):
        """Zoneout keeps: (T, B, F) → (N, F); a float or None passes through."""
        return self.pack(z) if isinstance(z, Tensor) else z

    def per_row(self, m: Tensor) -> Tensor:
        """(B, F) per sorted sequence → (N, F) per packed row."""
        if self.last is None:
            return m.repeat(self.T, 1)
        return m.index_select(0, self._row_seq)

    def sort(self, h: Tensor) -> Tensor:
        """(B, F) in batch order → sorted order."""
        return h if self.order is None else h.index_select(0, self.order)

    def unsort(self, h: Tensor) -> Tensor:
        return h if self.inverse is None else h.index_select(0, self.inverse)

    # -- used inside the kernels ----------------------------------------------------------------
    def final(self, Y: Tensor) -> Tensor:
        """(N, F) packed outputs → (B, F) each sorted sequence's value at its last step."""
        if self.last is None:
            return Y[self.N - self.B :].clone()
        return Y.index_select(0, self.last)

    def previous(self, first: Tensor, Y: Tensor) -> Tensor:
        """(N, F): for every packed row, the value one step earlier in the same sequence
        (``first`` (B, F) for step 0). Used for weight gradients, all steps in one GEMM."""
        B = self.B
        if self.last is None:
            return torch.cat([first, Y[: self.N - B]])
        out = Y.new_empty(self.N, Y.shape[1])  # step 0 is the first B rows; every later row reads Y
        out[:B] = first
        torch.index_select(Y, 0, self._prev_tail, out=out[B:])
        return out

    def previous_minus(self, first: Tensor, Y: Tensor, x: Tensor, out: Tensor) -> Tensor:
        """``out`` = ``previous(first, Y)`` − x (all (N, F)), without building ``previous`` when there are no
        lengths: then it is ``first`` for step 0 and Y shifted by one step."""
        if self.last is not None:
            return torch.sub(self.previous(first, Y), x, out=out)
        B = self.B
        torch.sub(first, x[:B], out=out[:B])
        torch.sub(Y[: self.N - B], x[B:], out=out[B:])
        return out

    def previous_product(self, dA: Tensor, first: Tensor, Y: Tensor, mask: Tensor | None = None) -> Tensor:
        """dAᵀ · (``previous(first, Y)`` ∗ the sequence's ``mask`` row, if given) — a weight gradient over all
        steps — without building that (N, F) operand when it can: with no lengths and no mask it is
        ``first`` then Y shifted by one step."""
        B = self.B
        if mask is not None:
            return weight_grad(dA, self.previous(first, Y).mul_(self.per_row(mask)))
        if self.last is not None:
            return weight_grad(dA, self.previous(first, Y))
        if self.N == B:
            return weight_grad(dA, first)
        return weight_grad(dA[:B], first, dA[B:], Y[: self.N - B])
