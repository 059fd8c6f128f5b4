"""The per-step matrix product of a recurrence, x ↦ x M, with one matrix M used at every step.

A step loop multiplies a few rows (the batch) by the same recurrent matrix T times. MKL's GEMM, behind
``torch.addmm``, copies M into its own blocked format on every call (cheap next to a large product, not
next to a product of 64 rows). ``StepProduct`` packs M once per pass (forward, or backward) where that
pays, in the first of:

1. MKL's packed GEMM (``packed_gemm.py``: the MKL inside torch, x86-64 Linux), float32 (and float64 in a
   torch that exports it), M of at least ``PACKED_MIN_ELEMENTS`` values: it writes into the loop's own
   blocks, like ``addmm``;
2. oneDNN's inner product on a matrix reordered once (float32, x86-64, M of at least
   ``ONEDNN_MIN_ELEMENTS`` values), which returns a fresh tensor every step;
3. ``addmm``.

MKL's packed GEMM took 0.58–0.86× the time of ``addmm_`` per product on ``bench_products.py``'s shapes
(``packed_gemm`` has them; float32, two threads, an AVX-512 Xeon); oneDNN there took 0.85–1.0× ``addmm_``'s
time at 512 × 512 and above, but its fresh outputs page-faulted in whole training steps (an RNN of hidden
512: 4,200 faults a step against 290 without oneDNN) and the steps took 1.01–1.04× longer with it. With
MKL's packed GEMM, training steps took 0.92× the time (vanilla RNN, B64 H512), 0.94× (GRU), 0.97× and 0.93×
(two bidirectional layers of H256, RNN and GRU) of those with oneDNN and ``addmm`` (A/B in one process).

oneDNN, measured on an earlier machine, per product, float32, oneDNN ÷ ``addmm_`` time
(``benchmarks/bench_products.py``): 64 rows,
M 512×1536: 0.70–0.78 (two threads) / 0.87 (one); 512×512: 0.88–0.90 / 0.91; 1536×512: 0.77–0.82 /
0.88; 32 rows, 256×768: 0.79–0.95; but 128×512 or 256×256: 1.25–1.45 (oneDNN's fixed cost per call,
10–15 µs, dominates). In whole training steps (A/B in one process, two threads) the GRU at B64 H512 took
0.93× the time, the RNN 0.97×, the LSTM 0.93×, an RNN of H768 0.87×, while GRUs of H256 (M 256×768)
moved between 0.97× and 1.08× — hence ``ONEDNN_MIN_ELEMENTS`` above them. A reordered (or packed) matrix
serves any number of rows at the same speed (the packed layout's steps shrink as sequences end).

Both libraries' sums run in another order than ``addmm``'s: float32 results differ in the last bits, as
they do between thread counts; other devices never take these paths.
"""
from __future__ import annotations

import platform

import torch
from torch import Tensor

from . import packed_gemm

__all__ = ["ONEDNN", "ONEDNN_MIN_ELEMENTS", "ONEDNN_MIN_STEPS", "PACKED_MIN_ELEMENTS", "StepProduct", "linear",
           "linear_takes_onednn", "packs", "weight_grad", "whole_product_on_onednn"]

#: Smallest matrix (K·N values) whose per-step products go through oneDNN (see the module docstring).
ONEDNN_MIN_ELEMENTS = 262_144  # 512 × 512: an RNN of hidden size 512, an LSTM of 256
#: Fewest steps in a pass for which reordering the matrix pays: the reorder (0.16–0.28 ms for 512×512 …
#: 2048×512) and, backwards, a transposed copy cost about two steps' savings (a GRU of hidden 512 trained
#: on one step took 1.27× the time with oneDNN).
ONEDNN_MIN_STEPS = 4

#: Whether this torch can run oneDNN's inner product on a reordered weight here (the fused loops and the
#: step kernel's several-row products). Measured on x86-64 only (AMD, MKL and oneDNN's x86 kernels): other
#: CPUs keep ``addmm``.
ONEDNN = (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
           and platform.machine().lower() in ("x86_64", "amd64"))


#: ``linear`` takes oneDNN for a product X Wᵀ whose reduction (X's columns, K) is at least this long …
LINEAR_MIN_REDUCTION = 256
#: … and whose output (W's rows) is at most this many times K wide …
LINEAR_MAX_WIDTH_RATIO = 2
#: … where MKL's packed GEMM is not in torch (``packed_gemm``); where it is, the whole-sequence products stay on
#: MKL's GEMM too, into pooled blocks (``linear``'s docstring), unless this is set.
LINEAR_ONEDNN_BESIDE_PACKED = False


def _onednn_float32(t: Tensor) -> bool:
    """float32 on the CPU with oneDNN here, not switched off by the user (``torch.backends.mkldnn.enabled =
    False``)."""
    return ONEDNN and torch.backends.mkldnn.enabled and t.dtype == torch.float32 and t.device.type == "cpu"


#: Smallest matrix (K·N values) packed by MKL (``packed_gemm``): 256 × 256, an RNN of hidden size 256 (a product
#: at 32 × 128 × 128 gained 8 %, and MKL's packed copy takes 8 MB whatever the matrix).
PACKED_MIN_ELEMENTS = 65_536


def _use_packed(m: Tensor, steps: int) -> bool:
    """MKL's packed GEMM for this matrix: CPU, a dtype it has, large enough, used for enough steps (packing
    costs about one product)."""
    return m.device.type == "cpu" and packs(m.numel(), m.dtype) and steps >= ONEDNN_MIN_STEPS


def _use_onednn(m: Tensor, steps: int) -> bool:
    """oneDNN for this matrix: float32 on the CPU (above), large enough, used for enough steps, and not packed
    by MKL instead."""
    return (_onednn_float32(m) and m.numel() >= ONEDNN_MIN_ELEMENTS and steps >= ONEDNN_MIN_STEPS
            and not _use_packed(m, steps))


def weight_grad(dG: Tensor, X: Tensor, dG2: Tensor | None = None, X2: Tensor | None = None) -> Tensor:
    """dGᵀ X (G, I) — a weight gradient summed over all steps' rows, dG (N, G), X (N, I) — computed as Xᵀ dG,
    then transposed, when G > I: MKL's GEMM took 0.84–0.97× the time that way round (G, I = 1536,
    512: 55 vs 65 ms on one thread, 27 vs 31 ms on two; 768, 256: 0.88×; 2048, 512: 0.94–0.97×) and 1.06× the
    other way (256, 512), on an AVX-512 Xeon. The result is then copied into the usual layout (a pass over G·I
    values, which accumulating into a parameter's ``.grad`` would make anyway), as ``torch.autograd.grad``
    hands it to the caller: torch.nn's weight gradients are contiguous. With ``dG2``, ``X2`` (more rows, given
    apart), + dG2ᵀ X2, accumulated in the same orientation."""
    if dG.shape[1] > X.shape[1]:
        out = X.t() @ dG
        return (out if dG2 is None else out.addmm_(X2.t(), dG2)).t().contiguous()
    out = dG.t() @ X
    return out if dG2 is None else out.addmm_(dG2.t(), X2)


def packs(numel: int, dtype: torch.dtype) -> bool:
    """Whether a CPU matrix of ``numel`` values in ``dtype``, used for enough steps, goes through MKL's packed
    GEMM (``dispatch`` asks, for its inference rule)."""
    return packed_gemm.available(dtype) and numel >= PACKED_MIN_ELEMENTS


def whole_product_on_onednn(m: Tensor, steps: int) -> bool:
    """Whether ``StepProduct(m, ·, steps).full`` returns products (oneDNN), where a caller that needs the
    product in column blocks would otherwise take a ``StepProduct`` per block."""
    return _use_onednn(m, steps)


def linear(X: Tensor, W: Tensor, bias: Tensor | None = None) -> Tensor | None:
    """X Wᵀ + bias (X (N, K), W (M, K), bias (M,) or None → (N, M)) by oneDNN's inner product where that
    measured faster than MKL's GEMM, else None: the caller runs ``addmm`` into a block of its own.

    For the products of a whole sequence at once — the input projection X W_ihᵀ and its gradient
    ∂L/∂X = ∂L/∂GX · W_ih, i.e. (∂L/∂GX) (W_ihᵀ)ᵀ — oneDNN took 0.85–0.92× MKL's time when the reduction is
    long (K ≥ 256) and the output not much wider than it (M ≤ 2K): 3200–6400 rows, K × M = 512 × 512,
    1536 × 512, 2048 × 512, 256 × 512, 1024 × 1024, 768 × 256, 256 × 64, and down to 64 rows, with one thread
    or two. With a short reduction it was about even (0.93–1.07×: K × M = 128 × 128, 128 × 384, 64 × 192) and
    with an output three or four times wider slower (1.03–1.13×: 512 × 1536, 512 × 2048)
    (``benchmarks/bench_products.py --linear``). Training steps (A/B in one process, two threads): RNN
    B64 T100 H512 0.96–0.99× the time, GRU 0.98×, LSTM 0.98–0.99×; configurations of hidden size 128 keep MKL.
    That was an earlier machine. On an AVX-512 Xeon, where torch's MKL has the packed GEMM the step loops
    use, oneDNN took 0.92–1.05× MKL's time per product and whole training steps took 1.01–1.03× longer with
    it (RNN and GRU B64 H512, the GRU's two bidirectional layers of H256, the variable-length LSTM): its fresh
    results page-faulted there. So where MKL's packed GEMM is in torch, these products stay on MKL's GEMM.
    The result is a fresh tensor (oneDNN has no ``out=``), whose pages can cost faults where MKL's GEMM
    writes into a pooled block; W is made contiguous (a copy when transposed)."""
    if not linear_takes_onednn(X, W):
        return None
    # (oneDNN reads the bias as if it were contiguous: a strided or expanded one would be read wrong, silently)
    bias = None if bias is None else bias.contiguous()
    return torch.ops.mkldnn._linear_pointwise(X.contiguous(), W.contiguous(), bias, "none", [], "")


def linear_takes_onednn(X: Tensor, W: Tensor) -> bool:
    """Whether ``linear(X, W)`` runs on oneDNN (the rule in its docstring)."""
    K = X.shape[1]
    return (_onednn_float32(X) and W.dtype == X.dtype and K >= LINEAR_MIN_REDUCTION
            and W.shape[0] <= LINEAR_MAX_WIDTH_RATIO * K
            and (LINEAR_ONEDNN_BESIDE_PACKED or not packed_gemm.available(X.dtype)))


def fresh_products(out: Tensor, bias: Tensor | None = None) -> Tensor:
    """Fill ``out`` (N, G), the per-step products of a loop, with zeros (or ``bias`` (G,) in every row) for
    all steps at once, so that each step can accumulate its GEMM in place (``out_t.addmm_(a, b)``).
    With two threads a small GEMM into a block that the calling thread has just written — which
    ``mm(out=)`` and ``addmm(out=)`` do first, zeroing or copying it — measured 1.1–1.4× slower than the
    same GEMM accumulating into a block written long before (B32 H128: 60 vs 43 µs; B64 H512, 512
    columns: 265 vs 230 µs, in a loop of products alone); one fill of the whole block costs a fraction
    of that. In a whole training step the gain is small (0.98–0.99× the time, A/B in one process: the
    layer-normalised LSTM/GRU at B32 H128, the GRU at B64 H512)."""
    return out.zero_() if bias is None else out.copy_(bias.expand_as(out))


class StepProduct:
    """x (b, K) ↦ x M (b, N) for a fixed M (K, N) (any strides: ``w.t()`` is the usual argument), for a
    loop of ``steps`` products of at most ``rows`` rows.

    ``acc(out, x)``: out += x M, in place. ``into(out, x, add)``: out = add + x M (``add`` None: out = x M).
    ``new(x)``: x M as a new tensor. ``full(x)``: the same, or None where the caller should rather use
    a product per column block (``addmm`` or MKL's packed GEMM into each block is cheaper than a full
    product followed by copies: see ``whole_product_on_onednn``).
    ``begin(block, bias)`` before a loop, then ``store(out, x)`` for each step's rows ``out`` of ``block``:
    out = bias + x M, where ``addmm`` and MKL accumulate into a block filled before the loop
    (``fresh_products``) and oneDNN's product is added to the bias as it is written (no fill)."""

    __slots__ = ("m", "packed", "bias", "mkl")

    def __init__(self, m: Tensor, rows: int, steps: int) -> None:
        self.m = m
        self.bias: Tensor | None = None
        self.mkl = packed_gemm.Packed(m, rows) if _use_packed(m, steps) else None
        # oneDNN's reordered Mᵀ (N, K), formatted for ``rows`` rows (it serves any count)
        self.packed = (torch.ops.mkldnn._reorder_linear_weight(m.t().contiguous(), rows)
                       if _use_onednn(m, steps) else None)

    def _product(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")

    def new(self, x: Tensor) -> Tensor:
        if self.mkl is not None:
            return self.mkl.compute(x, x.new_empty(x.shape[0], self.m.shape[1]), 0.0)
        return x @ self.m if self.packed is None else self._product(x)

    def full(self, x: Tensor) -> Tensor | None:
        return None if self.packed is None else self._product(x)

    def acc(self, out: Tensor, x: Tensor) -> Tensor:
        if self.mkl is not None:
            return self.mkl.compute(x, out, 1.0)
        if self.packed is None:
            return out.addmm_(x, self.m)
        return out.add_(self._product(x))

    def into(self, out: Tensor, x: Tensor, add: Tensor | None = None) -> Tensor:
        if self.mkl is not None:
            if add is None:
                return self.mkl.compute(x, out, 0.0)
            return self.mkl.compute(x, out.copy_(add), 1.0)
        if self.packed is None:
            return torch.mm(x, self.m, out=out) if add is None else torch.addmm(add, x, self.m, out=out)
        p = self._product(x)
        return out.copy_(p) if add is None else torch.add(add, p, out=out)

    def begin(self, block: Tensor, bias: Tensor | None = None) -> None:
        self.bias = bias
        if self.packed is None:
            fresh_products(block, bias)

    def store(self, out: Tensor, x: Tensor) -> Tensor:
        return self.acc(out, x) if self.packed is None else self.into(out, x, self.bias)
