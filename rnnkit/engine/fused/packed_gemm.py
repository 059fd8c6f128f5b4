"""MKL's packed-matrix GEMM, from the MKL inside torch: a matrix packed once, then multiplied many times.

A fused loop multiplies each step's few rows by the same recurrent matrix. ``torch.addmm`` calls MKL's
GEMM, which packs that matrix into its internal blocked format on every call; MKL's
``cblas_?gemm_pack`` does it once and ``cblas_?gemm_compute`` then reads the packed copy, writing into
the caller's block (``beta`` 0 or 1: no fresh output, so no page faults either). torch builds its x86-64
Linux wheels with MKL linked into ``libtorch_cpu`` and exports these functions; they are looked up there
with ctypes, and used only if a small product through them equals ``torch.mm``'s. Elsewhere (another
BLAS, another OS or CPU) ``available()`` is False and ``products.StepProduct`` keeps its other paths.

Measured per product, float32, two threads, an AVX-512 Xeon (``benchmarks/bench_products.py``, against
``out.addmm_``): 64 × 512 · 512 × 512 0.81× the time (101 vs 126 µs), 64 × 512 · 512 × 1536 0.73×,
64 × 1536 · 1536 × 512 0.81×, 32 × 256 · 256 × 768 0.68×, 8 × 512 · 512 × 1536 0.63×, 128 × 512 · 512 × 1536
0.86×, 32 × 128 · 128 × 512 0.85×, but 32 × 512 · 512 × 128 1.01× and, below the size rule, 128 × 64 · 64 × 192
1.18×. Packing costs 20 µs (512 × 512) to 180 µs (2048 × 512), and MKL's packed copy takes 8–14 MB whatever
the matrix (workspace included; from ``buffers``' pool), hence ``products.PACKED_MIN_ELEMENTS``. Sums run
in another order than ``addmm``'s: float32 results differ in the last bits.
"""
from __future__ import annotations

import ctypes
import platform
import sys
from pathlib import Path

import torch
from torch import Tensor

from . import buffers

__all__ = ["available", "Packed"]

_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED, _B_MATRIX = 101, 111, 112, 151, 162
_I, _P = ctypes.c_int, ctypes.c_void_p  # MKL's LP64 interface: the unsuffixed cblas names take 32-bit ints


def _load() -> dict | None:
    """{dtype: (get_size, pack, compute)} from torch's MKL, or None."""
    if not (sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")
            and torch.backends.mkl.is_available()):
        return None
    path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        lib = ctypes.CDLL(str(path))  # (already loaded by torch: this is a handle to it)
    except OSError:
        return None
    table = {}
    for dtype, p, real in ((torch.float32, "s", ctypes.c_float), (torch.float64, "d", ctypes.c_double)):
        try:  # (torch 2.13's x86-64 wheel exports the float32 functions only)
            get_size = getattr(lib, f"cblas_{p}gemm_pack_get_size")
            get_size.restype, get_size.argtypes = ctypes.c_size_t, [_I, _I, _I, _I]
            pack = getattr(lib, f"cblas_{p}gemm_pack")
            pack.restype, pack.argtypes = None, [_I, _I, _I, _I, _I, _I, real, _P, _I, _P]
            compute = getattr(lib, f"cblas_{p}gemm_compute")
            compute.restype, compute.argtypes = None, [_I, _I, _I, _I, _I, _I, _P, _I, _P, _I, real, _P, _I]
        except AttributeError:
            continue
        table[dtype] = (get_size, pack, compute)
    return table if table and _agrees(table) else None


def _agrees(table: dict) -> bool:
    """A product through the packed path equals torch.mm's, in each dtype loaded, for a transposed and a plain matrix
    and fewer rows than packed for (as the loops use it)."""
    g = torch.Generator().manual_seed(0)
    for dtype in table:
        x, w = torch.randn(5, 7, generator=g, dtype=dtype), torch.randn(9, 7, generator=g, dtype=dtype)
        for m in (w.t(), w.t().contiguous()):
            out = torch.empty(3, 9, dtype=dtype)
            Packed(m, 5, table[dtype]).compute(x[:3], out, 0.0)
            if not torch.allclose(out, x[:3] @ m, rtol=1e-4, atol=1e-5):
                return False
    return True


class Packed:
    """M (K, N) (unit stride in one dimension) packed by MKL for products x M of up to about ``rows`` rows (any
    count works). ``compute(x, out, beta)``: out = beta·out + x M, x (b, K) and out (b, N) with unit column
    stride."""

    __slots__ = ("buf", "K", "N", "compute_fn")

    def __init__(self, m: Tensor, rows: int, fns=None) -> None:
        get_size, pack, self.compute_fn = fns or _TABLE[m.dtype]
        K, N = m.shape
        if m.stride(1) != 1 and m.stride(0) != 1:
            m = m.contiguous()
        trans, ld = (_NO_TRANS, m.stride(0)) if m.stride(1) == 1 else (_TRANS, m.stride(1))
        self.buf = buffers.empty((get_size(_B_MATRIX, rows, N, K),), torch.empty(0, dtype=torch.uint8))
        pack(_ROW_MAJOR, _B_MATRIX, trans, rows, N, K, 1.0, m.data_ptr(), max(ld, 1), self.buf.data_ptr())
        self.K, self.N = K, N

    def compute(self, x: Tensor, out: Tensor, beta: float) -> Tensor:
        b = x.shape[0]
        # MKL wants each row's start at least a row's length after the last (lda ≥ K; it refuses, leaving out as it
        # was, otherwise): rows closer in memory — an initial state expanded over the batch, stride 0 — are copied;
        # a single row's stride is moot.
        if x.stride(1) != 1 or (b > 1 and x.stride(0) < self.K):
            x = x.contiguous()
        if out.stride(1) != 1 or (b > 1 and out.stride(0) < self.N):  # (not in the loops: their blocks are rows)
            return out.copy_(self.compute(x, out.contiguous(), beta))
        lda = x.stride(0) if b > 1 else self.K
        ldc = out.stride(0) if b > 1 else self.N
        self.compute_fn(_ROW_MAJOR, _NO_TRANS, _PACKED, b, self.N, self.K, x.data_ptr(), lda, self.buf.data_ptr(),
                        self.K, beta, out.data_ptr(), ldc)
        return out


_TABLE = _load()


def available(dtype: torch.dtype) -> bool:
    """Whether MKL's packed GEMM runs here for this dtype (float32, float64)."""
    return _TABLE is not None and dtype in _TABLE
