"""MKL's packed-matrix GEMM as the fused loops' per-step product (``rnnkit/engine/fused/packed_gemm.py``).

Where it loaded (torch's x86-64 Linux wheels: float32) it comes first in ``products.StepProduct``: each
call equals the product, for the operand layouts the loops pass; the layers give the same outputs and
gradients with it and without it for every branch of the loops; at a size the rule picks by itself a
layer still equals torch.nn; and the rule follows its documentation.
"""
from __future__ import annotations

import pytest
import torch
from test_products import CASES, _train_step

import rnnkit
from rnnkit.engine.fused import packed_gemm, products
from rnnkit.engine.fused.products import StepProduct

needs_packed = pytest.mark.skipif(not packed_gemm.available(torch.float32),
                                  reason="MKL's packed GEMM is not in this torch")


@needs_packed
def test_packed_only_for_large_enough_cpu_matrices_of_a_dtype_it_has():
    limit = products.PACKED_MIN_ELEMENTS
    assert StepProduct(torch.randn(256, 256), 32, 100).mkl is not None
    assert StepProduct(torch.randn(limit // 128, 128).t(), 8, 100).mkl is not None  # strides do not matter
    assert StepProduct(torch.randn(limit // 128 - 1, 128), 8, 100).mkl is None  # too small
    assert StepProduct(torch.randn(256, 256), 32, products.ONEDNN_MIN_STEPS - 1).mkl is None  # too few steps
    assert StepProduct(torch.randn(512, 512, dtype=torch.bfloat16), 64, 100).mkl is None
    f64 = StepProduct(torch.randn(512, 512, dtype=torch.float64), 64, 100)
    assert (f64.mkl is not None) == packed_gemm.available(torch.float64)
    assert StepProduct(torch.randn(512, 512), 64, 100).packed is None  # MKL first: no oneDNN reorder as well


@needs_packed
@pytest.mark.parametrize("layout", ["transposed", "contiguous", "strided_rows"])
@pytest.mark.parametrize("rows", [64, 7, 1], ids=["packed_rows", "fewer_rows", "one_row"])
def test_each_call_equals_the_product(rows, layout):
    """Every method, for M as the loops pass it (W.t(), or W_hh itself backwards) and for operands whose rows
    lie apart (a bidirectional layer's halves); x with fewer rows than packed for (shorter sequences)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(384, 512, generator=g)
    m = {"transposed": w.t(), "contiguous": w.t().contiguous(), "strided_rows": w.t()}[layout]
    x = torch.randn(rows, 1024, generator=g)[:, :512] if layout == "strided_rows" else torch.randn(rows, 512, generator=g)
    add = torch.randn(rows, 384, generator=g)
    p = StepProduct(m, 64, 100)
    assert p.mkl is not None
    exact = (x.double() @ m.double()).float()
    tol = dict(rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(p.new(x), exact, **tol)
    torch.testing.assert_close(p.acc(add.clone(), x), add + exact, **tol)
    torch.testing.assert_close(p.into(torch.full((rows, 384), float("nan")), x), exact, **tol)  # (out not read)
    torch.testing.assert_close(p.into(torch.empty(rows, 384), x, add), add + exact, **tol)
    wide = torch.zeros(rows, 768)  # an out block whose rows lie apart
    torch.testing.assert_close(p.acc(wide[:, 384:], x), exact, **tol)
    p.begin(block := torch.empty(rows, 384), add[0])
    torch.testing.assert_close(p.store(block, x), add[0] + exact, **tol)


@needs_packed
@pytest.mark.parametrize("case", list(CASES))
def test_layers_agree_with_and_without_mkl_packing(case, monkeypatch):
    """Every branch of the loops (options, lengths, layer norm, projection), float32: MKL's packed GEMM for
    every per-step product against ``addmm`` for every one (oneDNN off in both)."""
    cls, options, with_lengths = CASES[case]
    torch.manual_seed(0)
    layer = cls(6, 9, num_layers=2, bidirectional=True, engine="fused", **options)
    x = torch.randn(7, 4, 6)
    lengths = torch.tensor([7, 3, 5, 1]) if with_lengths else None
    used = []
    real = packed_gemm.Packed.compute
    monkeypatch.setattr(packed_gemm.Packed, "compute", lambda self, *a: used.append(1) or real(self, *a))
    monkeypatch.setattr(products, "ONEDNN_MIN_ELEMENTS", 10**12)
    monkeypatch.setattr(products, "PACKED_MIN_ELEMENTS", 1)
    packed = _train_step(layer, x, lengths, seed=1)
    assert used, "the packed path did not run"
    monkeypatch.setattr(products, "PACKED_MIN_ELEMENTS", 10**12)
    used.clear()
    plain = _train_step(layer, x, lengths, seed=1)
    assert not used
    for a, b in zip(packed, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_packed
@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
def test_layer_at_a_size_that_packs_matches_torch_nn(cell, monkeypatch):
    """At a size the rule packs by itself (hidden 256, float32, 12 steps), forwards and backwards, the fused
    layer still equals torch.nn."""
    used = []
    real = packed_gemm.Packed.compute
    monkeypatch.setattr(packed_gemm.Packed, "compute", lambda self, *a: used.append(1) or real(self, *a))
    torch.manual_seed(0)
    kit, ref = getattr(rnnkit, cell)(32, 256, engine="fused"), getattr(torch.nn, cell)(32, 256)
    ref.load_state_dict(kit.state_dict())
    x0 = torch.randn(12, 3, 32)
    outs = []
    for m in (kit, ref):
        x = x0.clone().requires_grad_()
        y, h = m(x)
        h = h[0] if cell == "LSTM" else h
        (y.sum() + h.sum()).backward()
        outs.append([y, h, x.grad] + [p.grad for p in m.parameters()])
    assert len(used) >= 24  # a product per step, forwards and backwards
    for a, b in zip(*outs):  # (float32 sums over 36 rows: gradients of order 1 agree to about 1e-5)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-5)


def test_packed_gemm_says_whether_it_loaded():
    """On torch's x86-64 Linux wheels (MKL inside) it loads for float32; elsewhere it is simply absent."""
    import platform
    import sys
    wheel_with_mkl = (sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")
                      and torch.backends.mkl.is_available())
    if wheel_with_mkl:
        assert packed_gemm.available(torch.float32)
    assert not packed_gemm.available(torch.bfloat16)


@needs_packed
@pytest.mark.parametrize("cell, H", [("RNN", 256), ("GRU", 256), ("LSTM", 128)])
@pytest.mark.parametrize("h0_kind", ["expanded", "batch_of_one_strided"])
def test_initial_state_rows_close_in_memory_at_a_size_that_packs(cell, H, h0_kind):
    """Step 0 multiplies h0, whose rows can lie closer than a row's length (an initial state expanded over the
    batch: stride 0; a batch of one whose hidden units are apart): MKL refuses such an operand and leaves the
    result unwritten, so it is copied first. Equal to torch.nn, forwards and backwards, both directions."""
    torch.manual_seed(0)
    kit = getattr(rnnkit, cell)(16, H, bidirectional=True, engine="fused")
    ref = getattr(torch.nn, cell)(16, H, bidirectional=True)
    ref.load_state_dict(kit.state_dict())
    B = 1 if h0_kind == "batch_of_one_strided" else 5
    x0 = torch.randn(12, B, 16)
    base = torch.randn(2, 1, H)
    h0 = base.expand(2, B, H) if h0_kind == "expanded" else torch.randn(2, H, 1).transpose(1, 2)
    state = (h0, h0.clone()) if cell == "LSTM" else h0
    outs = []
    for m in (kit, ref):
        x = x0.clone().requires_grad_()
        y, h = m(x, state)
        h = h[0] if cell == "LSTM" else h
        (y * y).sum().backward()
        outs.append([y, h, x.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_packed
def test_compute_with_rows_closer_than_a_row():
    w = torch.randn(256, 256)
    p = StepProduct(w.t(), 8, 100)
    row = torch.randn(1, 256)
    for x in (row.expand(6, 256), torch.randn(256, 1).t()):
        torch.testing.assert_close(p.new(x), x @ w.t(), rtol=1e-5, atol=1e-4)
