"""The fused loops' per-step product (``rnnkit/engine/fused/products.py``): oneDNN on a matrix reordered
once where that is faster, ``addmm`` elsewhere; likewise the products of all steps at once (``linear``).
Both give the same layers to float32 rounding, with every option that changes the loops, and the choice
follows the documented rule. (MKL's packed GEMM, which comes first where it loaded, is switched off for
these tests: ``test_packed_gemm.py`` tests it.)"""
from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engine.fused import packed_gemm, products, projection
from rnnkit.engine.fused.products import StepProduct

needs_onednn = pytest.mark.skipif(not products.ONEDNN, reason="this torch has no oneDNN")


@pytest.fixture(autouse=True)
def no_mkl_packing(monkeypatch):
    monkeypatch.setattr(products, "PACKED_MIN_ELEMENTS", 10**12)
    monkeypatch.setattr(products, "LINEAR_ONEDNN_BESIDE_PACKED", True)  # the oneDNN rule as written


def test_whole_sequence_products_stay_on_mkl_where_it_packs(monkeypatch):
    monkeypatch.setattr(products, "LINEAR_ONEDNN_BESIDE_PACKED", False)
    x, w = torch.randn(10, 512), torch.randn(512, 512)
    on_onednn = products.ONEDNN and not packed_gemm.available(torch.float32)
    assert products.linear_takes_onednn(x, w) == on_onednn


@needs_onednn
def test_onednn_only_for_large_float32_cpu_matrices():
    limit = products.ONEDNN_MIN_ELEMENTS
    assert StepProduct(torch.randn(512, 512), 64, 100).packed is not None
    assert StepProduct(torch.randn(limit // 256, 256).t(), 8, 100).packed is not None  # strides do not matter
    assert StepProduct(torch.randn(limit // 256 - 1, 256), 8, 100).packed is None
    assert StepProduct(torch.randn(512, 512, dtype=torch.float64), 64, 100).packed is None
    assert StepProduct(torch.randn(512, 512, dtype=torch.bfloat16), 64, 100).packed is None
    assert StepProduct(torch.randn(512, 512), 64, products.ONEDNN_MIN_STEPS).packed is not None
    assert StepProduct(torch.randn(512, 512), 64, products.ONEDNN_MIN_STEPS - 1).packed is None  # too few steps
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # the user's switch is respected
    try:
        assert StepProduct(torch.randn(512, 512), 64, 100).packed is None
    finally:
        torch.backends.mkldnn.enabled = saved


@needs_onednn
def test_linear_takes_onednn_for_long_reductions_not_much_wider_outputs():
    x = torch.randn(10, 512)
    assert products.linear(x, torch.randn(1024, 512)) is not None  # M = 2K
    assert products.linear(x, torch.randn(1025, 512)) is None  # wider
    assert products.linear(torch.randn(10, 255), torch.randn(100, 255)) is None  # a short reduction
    assert products.linear(x.double(), torch.randn(512, 512, dtype=torch.float64)) is None
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        assert products.linear(x, torch.randn(512, 512)) is None
    finally:
        torch.backends.mkldnn.enabled = saved


@needs_onednn
@pytest.mark.parametrize("transposed", [False, True])
def test_linear_equals_the_product(transposed):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(70, 512, generator=g)
    w = torch.randn(384, 512, generator=g) if not transposed else torch.randn(512, 384, generator=g).t()
    b = torch.randn(384, generator=g)
    exact = x.double() @ w.double().t()
    torch.testing.assert_close(products.linear(x, w), exact.float(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(products.linear(x, w, b), (exact + b.double()).float(), rtol=1e-5, atol=1e-4)
    for strided in (torch.randn(768, generator=g)[::2], torch.randn(1, generator=g).expand(384)):  # not contiguous
        torch.testing.assert_close(products.linear(x, w, strided), (exact + strided.double()).float(), rtol=1e-5,
                                   atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("rows", [64, 7, 1], ids=["packed_rows", "fewer_rows", "one_row"])
def test_each_call_equals_the_product(rows):
    g = torch.Generator().manual_seed(0)
    m = torch.randn(768, 512, generator=g).t()  # (K, N) = (512, 768), transposed storage as the loops pass it
    x, add = torch.randn(rows, 512, generator=g), torch.randn(rows, 768, generator=g)
    p = StepProduct(m, 64, 100)
    assert p.packed is not None
    exact = (x.double() @ m.double()).float()
    tol = dict(rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(p.full(x), exact, **tol)
    torch.testing.assert_close(p.new(x), exact, **tol)
    torch.testing.assert_close(p.acc(add.clone(), x), add + exact, **tol)
    torch.testing.assert_close(p.into(torch.empty(rows, 768), x), exact, **tol)
    torch.testing.assert_close(p.into(torch.empty(rows, 768), x, add), add + exact, **tol)


# (layer class, constructor options, call with lengths): each exercises another branch of the loops
CASES = {
    "gru": (rnnkit.GRU, {}, True),
    "gru_layer_norm": (rnnkit.GRU, {"layer_norm": True}, False),
    "gru_dropout_zoneout": (rnnkit.GRU, {"recurrent_dropout": 0.3, "zoneout": 0.2}, True),
    "rnn_tanh": (rnnkit.RNN, {}, True),
    "rnn_tanh_zoneout": (rnnkit.RNN, {"zoneout": 0.2}, False),
    "rnn_relu_dropout": (rnnkit.RNN, {"nonlinearity": "relu", "recurrent_dropout": 0.3}, True),
    "lstm": (rnnkit.LSTM, {}, True),
    "lstm_layer_norm": (rnnkit.LSTM, {"layer_norm": True}, False),
    "lstm_proj_dropout_zoneout": (rnnkit.LSTM, {"proj_size": 5, "recurrent_dropout": 0.3, "zoneout": 0.2}, True),
}


def _record_linear(monkeypatch) -> list[bool]:
    """Whether each whole-sequence product the projection asks ``products.linear`` for ran on oneDNN."""
    taken, real = [], products.linear

    def recorded(*args):
        result = real(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(projection, "linear", recorded)
    return taken


def _train_step(layer, x, lengths, seed):
    torch.manual_seed(seed)  # the same dropout and zoneout masks in both runs
    layer.zero_grad()
    x = x.clone().requires_grad_()
    y, _ = layer(x, lengths=lengths) if lengths is not None else layer(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return [y, x.grad] + [p.grad for p in layer.parameters()]


@needs_onednn
@pytest.mark.parametrize("case", list(CASES))
def test_layers_agree_with_and_without_onednn(case, monkeypatch):
    cls, options, with_lengths = CASES[case]
    torch.manual_seed(0)
    layer = cls(6, 9, num_layers=2, bidirectional=True, engine="fused", **options)
    x = torch.randn(7, 4, 6)
    lengths = torch.tensor([7, 3, 5, 1]) if with_lengths else None
    used, linear_used = [], _record_linear(monkeypatch)
    monkeypatch.setattr(StepProduct, "_product", lambda self, a: used.append(1) or torch.ops.mkldnn._linear_pointwise(
        a, self.packed, None, "none", [], ""))
    monkeypatch.setattr(products, "ONEDNN_MIN_ELEMENTS", 1)  # every product through oneDNN
    monkeypatch.setattr(products, "LINEAR_MIN_REDUCTION", 1)  # and every whole-sequence one
    monkeypatch.setattr(products, "LINEAR_MAX_WIDTH_RATIO", 10**6)
    onednn = _train_step(layer, x, lengths, seed=1)
    assert used, "the oneDNN path did not run"
    assert linear_used and all(linear_used), "oneDNN's whole-sequence products did not all run"
    monkeypatch.setattr(products, "ONEDNN_MIN_ELEMENTS", 10**12)  # none
    monkeypatch.setattr(products, "LINEAR_MIN_REDUCTION", 10**12)
    used.clear()
    linear_used.clear()
    plain = _train_step(layer, x, lengths, seed=1)
    assert not used and linear_used and not any(linear_used)
    for a, b in zip(onednn, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_large_layer_takes_onednn_and_matches_torch_nn(monkeypatch):
    """At the size the rules pick oneDNN by themselves (an RNN of input 256 and hidden size 512: the per-step
    products, the input projection and its gradient), the fused layer still equals torch.nn in float32."""
    used, linear_used = [], _record_linear(monkeypatch)
    real = StepProduct._product
    monkeypatch.setattr(StepProduct, "_product", lambda self, a: used.append(1) or real(self, a))
    torch.manual_seed(0)
    kit, ref = rnnkit.RNN(256, 512, engine="fused"), torch.nn.RNN(256, 512)
    ref.load_state_dict(kit.state_dict())
    x0 = torch.randn(5, 3, 256) * 0.1
    outs = []
    for m in (kit, ref):
        x = x0.clone().requires_grad_()
        y, h = m(x)
        (y.sum() + h.sum()).backward()
        outs.append([y, h, x.grad] + [p.grad for p in m.parameters()])
    assert used and linear_used == [True, True]  # GX = X W_ihᵀ + b and ∂L/∂X
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
