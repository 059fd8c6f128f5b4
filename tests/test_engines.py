"""The engines: the fused engine's hand-written BPTT passes ``gradcheck`` and equals the reference
engine (float64 to rounding, float32 within a loose tolerance); ``choose_engine`` picks as documented
and the layers really run the engine it names."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence
from core_helpers import DT, MODE_IDS, MODES_PROJ, assert_all_close, grads_of, loss_of, random, states_list

import rnnkit
from rnnkit.engine import LayerWeights, choose_engine, dispatch, fused, native, reference
from rnnkit.engine.fused import packed_gemm, products
from rnnkit.engine.types import Options

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}

#: Per-sequence lengths for B = 4, T = 6, each sending the fused layout down a different path.
LENGTHS = {
    "none": None,  # no lengths: zero-copy reshape, no sort
    "unsorted": [6, 2, 5, 1],  # sort and unsort, a sequence of one step
    "sorted": [6, 5, 2, 1],  # already sorted: the identity order is skipped
    "all_full": [6, 6, 6, 6],  # lengths given but all T: packed indices, every step full
    "short": [3, 1, 4, 2],  # the longest is shorter than T: padding past every sequence
}


def layer_tensors(mode: str, proj: int, T: int, B: int, I: int, H: int, bias: bool, dtype=DT, seed: int = 0):
    """[x (T, B, I), h0, (c0), w_ih, w_hh, (b_ih, b_hh), (w_hr)] — the leaves of one layer run."""
    G, P = GATES[mode] * H, proj or H
    ts = [random(T, B, I, seed=seed, dtype=dtype), random(B, P, seed=seed + 1, dtype=dtype, scale=0.5)]
    if mode == "lstm":
        ts.append(random(B, H, seed=seed + 2, dtype=dtype, scale=0.5))
    s = H**-0.5
    ts += [random(G, I, seed=seed + 3, dtype=dtype, scale=s), random(G, P, seed=seed + 4, dtype=dtype, scale=s)]
    if bias:
        ts += [random(G, seed=seed + 5, dtype=dtype, scale=s), random(G, seed=seed + 6, dtype=dtype, scale=s)]
    if proj:
        ts.append(random(proj, H, seed=seed + 7, dtype=dtype, scale=s))
    return ts


def layer_call(run_layer, mode: str, proj: int, bias: bool, lengths, reverse: bool):
    """A function of the leaves from ``layer_tensors`` that runs one layer and returns (y, h_n[, c_n])."""
    n_states = 2 if mode == "lstm" else 1

    def call(*ts):
        x, states, ws = ts[0], ts[1 : 1 + n_states], list(ts[1 + n_states :])
        w_ih, w_hh = ws[:2]
        b_ih, b_hh = ws[2:4] if bias else (None, None)
        w_hr = ws[-1] if proj else None
        state = tuple(states) if mode == "lstm" else states[0]
        lens = None if lengths is None else torch.tensor(lengths)
        y, final = run_layer(mode, x, state, LayerWeights(w_ih, w_hh, b_ih, b_hh, w_hr), lens, reverse)
        return (y, *states_list(final))

    return call


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", ["none", "unsorted", "short"])
@pytest.mark.parametrize("mode, proj", MODES_PROJ, ids=MODE_IDS)
def test_fused_gradcheck(mode, proj, lengths, reverse):
    """Gradients w.r.t. the input, the initial state(s) and every weight, against finite differences."""
    lens = {"none": None, "unsorted": [4, 1, 3], "short": [2, 3, 1]}[lengths]
    ts = [t.requires_grad_() for t in layer_tensors(mode, proj, T=4, B=3, I=2, H=5, bias=True, seed=11)]
    assert torch.autograd.gradcheck(layer_call(fused.run_layer, mode, proj, True, lens, reverse), ts)


def compare_engines(mode, proj, bias, lengths, reverse, dtype, **tol):
    """Outputs and every gradient of fused.run_layer equal reference.run_layer's."""
    base = layer_tensors(mode, proj, T=6, B=4, I=3, H=5, bias=bias, dtype=dtype, seed=3)
    results = []
    for run_layer in (fused.run_layer, reference.run_layer):
        leaves = [t.clone().requires_grad_() for t in base]
        outs = layer_call(run_layer, mode, proj, bias, LENGTHS[lengths], reverse)(*leaves)
        results.append((list(outs), grads_of(loss_of(outs), leaves)))
    (out_f, grad_f), (out_r, grad_r) = results
    assert_all_close(out_f, out_r, ["y", "h_n", "c_n"][: len(out_r)], **tol)
    assert_all_close(grad_f, grad_r, [f"grad of leaf {k}" for k in range(len(base))], **tol)


ENGINE_CASES = list(itertools.product(MODES_PROJ, (False, True), LENGTHS, (False, True)))
ENGINE_IDS = [f"{MODE_IDS[MODES_PROJ.index(mp)]}-bias={b}-{ln}-rev={r}" for mp, b, ln, r in ENGINE_CASES]


@pytest.mark.parametrize("mode_proj, bias, lengths, reverse", ENGINE_CASES, ids=ENGINE_IDS)
def test_fused_equals_reference_float64(mode_proj, bias, lengths, reverse):
    compare_engines(*mode_proj, bias, lengths, reverse, DT)


@pytest.mark.parametrize("mode_proj, bias, lengths, reverse", ENGINE_CASES, ids=ENGINE_IDS)
def test_fused_equals_reference_float32(mode_proj, bias, lengths, reverse):
    compare_engines(*mode_proj, bias, lengths, reverse, torch.float32, rtol=1e-4, atol=1e-5)


# -- engine selection -------------------------------------------------------------------------------
X32, X64 = torch.zeros(12, 2, 1), torch.zeros(12, 2, 1, dtype=DT)  # T ≥ dispatch.FUSED_MIN_STEPS
LENS = torch.tensor([3, 1])


@pytest.mark.parametrize(
    "mode, x, lengths, needs_grad, expected",
    [
        ("lstm", X32, None, True, "native"),  # training a float32 LSTM on CPU: torch's oneDNN kernel
        ("lstm", X32, LENS, True, "fused"),  # variable lengths
        ("lstm", X64, None, True, "fused"),  # float64
        ("gru", X32, None, True, "fused"),  # no fused CPU kernel in torch for GRU or RNN
        ("rnn_tanh", X32, None, True, "fused"),
        ("rnn_relu", X32, None, True, "fused"),
        ("gru", X64, LENS, True, "fused"),
        ("gru", X64, None, False, "native"),  # inference: torch's C++ loop
        ("rnn_relu", X32, None, False, "native"),
        ("lstm", X64, LENS, False, "native"),  # ... lengths included: torch's packed loop
    ],
)
def test_auto_choice(mode, x, lengths, needs_grad, expected):
    assert choose_engine("auto", mode, x, lengths, needs_grad=needs_grad) == expected


def test_auto_runs_large_vanilla_rnn_inference_fused():
    """Inference of a vanilla RNN in float32 on the CPU goes to the fused loop once T·B·H reaches
    ``FUSED_INFERENCE_MIN_WORK`` (padded or packed rows); smaller calls, float64, GRU, LSTM and an
    unknown hidden size stay on torch's loop, and autocast keeps torch's kernel."""
    limit = dispatch.FUSED_INFERENCE_MIN_WORK
    big, small = torch.zeros(limit // 100, 1, 3), torch.zeros(limit // 100 - 1, 1, 3)  # × H = 100
    rows = torch.zeros(limit // 100, 3)  # a PackedSequence's rows
    for mode in ("rnn_tanh", "rnn_relu"):
        assert choose_engine("auto", mode, big, None, needs_grad=False, hidden_size=100) == "fused"
        assert choose_engine("auto", mode, rows, torch.tensor([1] * (limit // 100)), needs_grad=False,
                             hidden_size=100) == "fused"
        assert choose_engine("auto", mode, small, None, needs_grad=False, hidden_size=100) == "native"
        assert choose_engine("auto", mode, big.double(), None, needs_grad=False, hidden_size=100) == "native"
        assert choose_engine("auto", mode, big, None, needs_grad=False) == "native"
        few_steps = torch.zeros(dispatch.FUSED_MIN_STEPS - 1, limit, 3)  # plenty of rows, too few steps
        assert choose_engine("auto", mode, few_steps, None, needs_grad=False, hidden_size=100) == "native"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert choose_engine("auto", mode, big, None, needs_grad=False, hidden_size=100) == "native"
    for mode in ("gru", "lstm"):
        assert choose_engine("auto", mode, big, None, needs_grad=False, hidden_size=100) == "native"


def test_auto_runs_large_gru_inference_fused_where_mkl_packs_its_products():
    """A GRU's float32 CPU inference goes to the fused loop under the vanilla RNN's conditions when its step
    products are MKL-packed (each column block, n's H·H the smaller, ≥ PACKED_MIN_ELEMENTS, where MKL's packed
    GEMM loaded); else torch's loop."""
    H = 256
    assert H * H >= products.PACKED_MIN_ELEMENTS > 200 * 200
    big = torch.zeros(dispatch.FUSED_INFERENCE_MIN_WORK // H + 1, 1, 3)
    packed = packed_gemm.available(torch.float32)
    assert choose_engine("auto", "gru", big, None, needs_grad=False, hidden_size=H) == ("fused" if packed else "native")
    assert choose_engine("auto", "gru", big, None, needs_grad=False, hidden_size=128) == "native"
    assert choose_engine("auto", "gru", big, None, needs_grad=False, hidden_size=200) == "native"  # n's block unpacked
    assert choose_engine("auto", "gru", big[:-2], None, needs_grad=False, hidden_size=H) == "native"  # too little work
    assert choose_engine("auto", "gru", big.double(), None, needs_grad=False, hidden_size=H) == "native"
    assert choose_engine("auto", "lstm", big, None, needs_grad=False, hidden_size=H) == "native"


def test_auto_trains_gru_on_the_fused_engine_at_every_size():
    """With its blocks reused, the fused GRU beats torch's per-step graph at large steps too (the
    module docstring of ``dispatch`` has the figures); float32 LSTM training stays on oneDNN."""
    for B in (1, 128, 512):
        x = torch.zeros(dispatch.FUSED_MIN_STEPS, B, 1)
        assert choose_engine("auto", "gru", x, None) == "fused"
        assert choose_engine("auto", "lstm", x, None) == "native"


def test_auto_trains_short_dense_batches_on_torch_kernel():
    """Below FUSED_MIN_STEPS steps (a decoder stepped one token at a time) a dense GRU, RNN or float64
    LSTM trains on torch's kernel; with per-sequence lengths or a variant option the fused engine still runs."""
    short = torch.zeros(dispatch.FUSED_MIN_STEPS - 1, 4, 1)
    for mode in ("gru", "rnn_tanh", "rnn_relu"):
        assert choose_engine("auto", mode, short, None) == "native"
        assert choose_engine("auto", mode, short.double(), None) == "native"
        assert choose_engine("auto", mode, short, torch.tensor([3, 1, 2, 2])) == "fused"
        assert choose_engine("auto", mode, short, None, layer_norm=True) == "fused"
        assert choose_engine("auto", mode, short, None, Options(zoneout=0.1)) == "fused"
    assert choose_engine("auto", "lstm", short.double(), None) == "native"


@pytest.mark.parametrize("engine", ["reference", "fused", "native"])
def test_explicit_engine_is_kept(engine):
    for mode, x in itertools.product(GATES, (X32, X64)):
        assert choose_engine(engine, mode, x, None) == engine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_picks_native_on_cuda():
    assert choose_engine("auto", "gru", X64.cuda(), LENS) == "native"


@pytest.mark.parametrize(
    "layer, dtype, use_lengths, grad, expected",
    [
        (rnnkit.LSTM, torch.float32, False, True, "native"),
        (rnnkit.LSTM, torch.float32, True, True, "fused"),
        (rnnkit.LSTM, DT, False, True, "fused"),
        (rnnkit.GRU, torch.float32, False, True, "fused"),
        (rnnkit.RNN, torch.float32, False, True, "fused"),
        (rnnkit.GRU, DT, False, False, "native"),  # under torch.no_grad()
        (rnnkit.GRU, DT, True, False, "native"),  # inference with lengths: torch's packed loop
        (rnnkit.RNN, torch.float32, False, False, "native"),  # small vanilla RNN inference
    ],
)
def test_layer_runs_the_chosen_engine(monkeypatch, layer, dtype, use_lengths, grad, expected):
    """Spy on the engines: an ``auto`` layer calls exactly the engine ``choose_engine`` names, and an
    explicit ``engine=`` (constructor or attribute) overrides it."""
    calls = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(native, "run_stack", spy("native", native.run_stack))
    for name in ("reference", "fused"):
        monkeypatch.setitem(dispatch._LAYER_FNS, name, spy(name, dispatch._LAYER_FNS[name]))
    m = layer(3, 4, num_layers=2, dtype=dtype)
    x = torch.randn(dispatch.FUSED_MIN_STEPS, 2, 3, dtype=dtype)
    kwargs = {"lengths": torch.tensor([x.shape[0], 2])} if use_lengths else {}
    with torch.set_grad_enabled(grad):
        m(x, **kwargs)
        assert set(calls) == {expected}
        for engine in ("reference", "fused", "native"):
            calls.clear()
            m.engine = engine
            m(x, **kwargs)
            assert set(calls) == {engine}


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["RNN", "GRU"])
def test_large_rnn_inference_runs_fused_and_equals_torch(monkeypatch, packed, cell):
    """Under no_grad a float32 vanilla RNN with T·B·H ≥ FUSED_INFERENCE_MIN_WORK runs the fused engine (spied),
    and its outputs equal torch.nn's; so does a GRU of hidden size 256 where MKL packs its step products."""
    if cell == "GRU" and not packed_gemm.available(torch.float32):
        pytest.skip("MKL's packed GEMM is not in this torch: GRU inference stays on torch's loop")
    calls = []
    for name in ("fused",):
        fn = dispatch._LAYER_FNS[name]
        monkeypatch.setitem(dispatch._LAYER_FNS, name, lambda *a, fn=fn, **k: calls.append(1) or fn(*a, **k))
    run_packed, run_pair = fused.run_stack_packed, fused.run_bidirectional
    monkeypatch.setattr(fused, "run_stack_packed", lambda *a, **k: calls.append(1) or run_packed(*a, **k))
    monkeypatch.setattr(fused, "run_bidirectional", lambda *a, **k: calls.append(1) or run_pair(*a, **k))
    torch.manual_seed(0)
    H = 100 if cell == "RNN" else 256
    kit = getattr(rnnkit, cell)(3, H, num_layers=2, bidirectional=True)
    ref = getattr(torch.nn, cell)(3, H, num_layers=2, bidirectional=True)
    ref.load_state_dict(kit.state_dict())
    T, B = dispatch.FUSED_INFERENCE_MIN_WORK // (H * 4) + 5, 4
    x = torch.randn(T, B, 3)
    lengths = torch.tensor([T, T - 3, T - 2, T - 1])  # packed: 4T − 6 rows, still ≥ the limit / H
    inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
    with torch.no_grad():
        (y, h), (y_ref, h_ref) = kit(inp), ref(inp)
    assert calls, "the fused engine did not run"
    torch.testing.assert_close(y.data if packed else y, y_ref.data if packed else y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_fused_refuses_second_derivatives_clearly(layer):
    """create_graph=True through the hand-written backward would drop second-order terms: it must raise."""
    m = layer(3, 4, engine="fused", dtype=DT)
    x = torch.randn(5, 2, 3, dtype=DT, requires_grad=True)
    y, _ = m(x)
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.grad(y.sum(), x, create_graph=True)
    ref = layer(3, 4, engine="reference", dtype=DT)
    (g,) = torch.autograd.grad(ref(x)[0].sum(), x, create_graph=True)
    g.sum().backward()  # the reference engine differentiates twice


def test_auto_counts_a_state_that_needs_grad_as_training():
    x = torch.randn(dispatch.FUSED_MIN_STEPS, 2, 3)
    h0 = torch.zeros(1, 2, 4, requires_grad=True)
    m = rnnkit.GRU(3, 4).requires_grad_(False)
    calls = []
    original = dispatch._LAYER_FNS["fused"]
    dispatch._LAYER_FNS["fused"] = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        y, _ = m(x, h0)
    finally:
        dispatch._LAYER_FNS["fused"] = original
    assert calls, "h0 needs a gradient, so auto must train with the fused engine"
    y.sum().backward()
    assert h0.grad is not None


# -- auto's LSTM with variable lengths: torch's kernel for the dense leading steps ----------------------
#: T = 9, B = 4: every sequence runs the first 5 steps, so 4 of them (one is kept for the tail) go to torch.
PREFIX_LENGTHS = [9, 5, 7, 6]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [PREFIX_LENGTHS, None, [6, 6, 6, 6]], ids=["varied", "none", "equal"])
def test_native_prefix_equals_reference(monkeypatch, lengths, reverse, bias):
    """The dense block through torch.lstm and the fused tail from its state together equal the reference
    engine in float64 (outputs, final states and every gradient) — and torch.lstm really ran."""
    calls = []
    lstm = native._OPS["lstm"]  # torch.lstm, as the native engine calls it
    monkeypatch.setitem(native._OPS, "lstm", lambda *a: calls.append(a[0].shape) or lstm(*a))
    T = 9 if lengths is None else max(lengths)
    base = layer_tensors("lstm", 0, T=T, B=4, I=3, H=5, bias=bias, dtype=DT, seed=5)
    prefix = lambda *a: fused.run_layer(*a, native_prefix=True)  # noqa: E731
    results = []
    for run_layer in (prefix, reference.run_layer):
        leaves = [t.clone().requires_grad_() for t in base]
        outs = layer_call(run_layer, "lstm", 0, bias, lengths, reverse)(*leaves)
        results.append((list(outs), grads_of(loss_of(outs), leaves)))
    assert calls == [(min(lengths or [T]) - 1, 4, 3)]
    (out_p, grad_p), (out_r, grad_r) = results
    assert_all_close(out_p, out_r, ["y", "h_n", "c_n"])
    assert_all_close(grad_p, grad_r, [f"grad of leaf {k}" for k in range(len(base))])


def test_native_prefix_skips_short_blocks_and_options(monkeypatch):
    """Fewer than NATIVE_PREFIX_MIN_STEPS shared steps, or a per-step mask, keep the whole loop fused."""
    calls = []
    monkeypatch.setitem(native._OPS, "lstm", lambda *a: calls.append(1))
    ts = layer_tensors("lstm", 0, T=9, B=4, I=3, H=5, bias=True, dtype=DT)
    w = LayerWeights(*ts[3:7])
    short = torch.tensor([9, fused.lstm.NATIVE_PREFIX_MIN_STEPS, 7, 6])
    fused.run_layer("lstm", ts[0], (ts[1], ts[2]), w, short, native_prefix=True)
    zone = rnnkit.engine.Noise(zone_h=torch.ones(9, 4, 5, dtype=DT))
    fused.run_layer("lstm", ts[0], (ts[1], ts[2]), w, torch.tensor(PREFIX_LENGTHS), noise=zone, native_prefix=True)
    assert calls == []


def test_native_prefix_choice():
    """auto's fused float32 LSTM on the CPU takes it; an explicit engine, float64, GRU and a projection do not."""
    ws = rnnkit.LSTM(1, 4).layer_weights()
    assert dispatch.native_prefix("auto", "fused", "lstm", X32, ws) == torch.backends.mkldnn.is_available()
    assert not dispatch.native_prefix("fused", "fused", "lstm", X32, ws)
    assert not dispatch.native_prefix("auto", "fused", "lstm", X64, ws)
    assert not dispatch.native_prefix("auto", "fused", "gru", X32, rnnkit.GRU(1, 4).layer_weights())
    assert not dispatch.native_prefix("auto", "fused", "lstm", X32, rnnkit.LSTM(1, 4, proj_size=2).layer_weights())


@pytest.mark.parametrize("packed", [False, True], ids=["lengths", "packed"])
def test_auto_lstm_with_lengths_matches_torch_float32(packed):
    """The layer as a user runs it (auto, float32, 2 layers, bidirectional, variable lengths) equals
    torch.nn.LSTM on the same PackedSequence within float32 rounding, gradients included."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, 6, num_layers=2, bidirectional=True)
    ours = rnnkit.LSTM(3, 6, num_layers=2, bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(12, 5, 3)
    lengths = torch.tensor([12, 8, 11, 9, 10])
    outs, grads = [], []
    for m in (ref, ours):
        xi = x.clone().requires_grad_()
        if packed or m is ref:
            y, (h, c) = m(pack_padded_sequence(xi, lengths, enforce_sorted=False))
            y = pad_packed_sequence(y, total_length=12)[0]
        else:
            y, (h, c) = m(xi, lengths=lengths)
        (y.sin().sum() + h.sum() + c.cos().sum()).backward()
        outs.append((y, h, c))
        grads.append([xi.grad] + [p.grad for p in m.parameters()])
    assert_all_close(list(outs[1]), list(outs[0]), ["y", "h_n", "c_n"], rtol=1e-4, atol=1e-5)
    assert_all_close(grads[1], grads[0], ["x"] + [n for n, _ in ref.named_parameters()], rtol=1e-4, atol=1e-5)


# -- locked dropout between layers on torch's kernel, one layer at a time ------------------------------
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode, proj", [mp for mp in MODES_PROJ if not mp[1]], ids=lambda v: str(v))
def test_native_run_layer_equals_reference(mode, proj, reverse):
    """native.run_layer (torch's kernel for one layer-direction) has the per-layer engines' contract."""
    base = layer_tensors(mode, 0, T=6, B=4, I=3, H=5, bias=True, dtype=DT, seed=9)
    results = []
    for run_layer in (native.run_layer, reference.run_layer):
        leaves = [t.clone().requires_grad_() for t in base]
        outs = layer_call(run_layer, mode, 0, True, None, reverse)(*leaves)
        results.append((list(outs), grads_of(loss_of(outs), leaves)))
    (out_n, grad_n), (out_r, grad_r) = results
    assert_all_close(out_n, out_r, ["y", "h_n", "c_n"][: len(out_r)])
    assert_all_close(grad_n, grad_r, [f"grad of leaf {k}" for k in range(len(base))])
    with pytest.raises(ValueError, match="without per-step masks"):
        native.run_layer(mode, base[0], base[1], LayerWeights(*base[-4:]), torch.tensor([6, 5, 4, 3]))


@pytest.mark.parametrize("kind", ["locked", "variational"])
def test_native_layers_draw_the_same_masks_as_fused(kind):
    """A stack with locked masks between layers, stacked over torch's per-layer kernel, equals the same
    stack over the reference engine for the same seed: same masks, same outputs and gradients (float64)."""
    from rnnkit.engine.stack import run_stack
    from rnnkit.engine.types import Options

    m = rnnkit.LSTM(3, 5, num_layers=3, bidirectional=True, dtype=DT)
    x = torch.randn(7, 2, 3, dtype=DT)
    hx = (torch.zeros(6, 2, 5, dtype=DT), torch.zeros(6, 2, 5, dtype=DT))
    results = []
    for layer_fn in (native.run_layer, reference.run_layer):
        torch.manual_seed(4)
        leaves = [x.clone().requires_grad_(), *(p.detach().clone().requires_grad_() for p in m.parameters())]
        weights = [LayerWeights(*leaves[1 + 4 * k : 5 + 4 * k]) for k in range(6)]
        y, (h, c) = run_stack(layer_fn, "lstm", leaves[0], hx, weights, None, 3, True, 0.5, True,
                              Options(dropout_kind=kind))
        results.append(([y, h, c], grads_of(loss_of([y, h, c]), leaves)))
    assert_all_close(results[0][0], results[1][0], ["y", "h_n", "c_n"])
    assert_all_close(results[0][1], results[1][1], [f"grad {k}" for k in range(len(results[0][1]))])


def test_auto_runs_locked_dropout_on_torchs_kernel_where_it_would_run_torchs():
    """Masks between layers are the only option: auto keeps torch's kernel, one layer at a time, exactly
    where it would pick it without them; lengths or a recurrent mask keep the fused engine."""
    from rnnkit.engine.types import Options

    locked = Options(dropout_kind="locked")
    assert choose_engine("auto", "lstm", X32, None, locked) == "native-layers"
    assert choose_engine("auto", "lstm", X32, None, Options(dropout_kind="variational")) == "native-layers"
    assert choose_engine("auto", "gru", X64, None, locked, needs_grad=False) == "native-layers"
    assert choose_engine("auto", "lstm", X32, LENS, locked) == "fused"
    assert choose_engine("auto", "lstm", X64, None, locked) == "fused"
    assert choose_engine("auto", "gru", X32, None, locked) == "fused"
    assert choose_engine("auto", "lstm", X32, None, Options(dropout_kind="variational", recurrent_dropout=0.2)) == "fused"
    assert choose_engine("auto", "lstm", X32, None, Options(dropout_kind="locked", zoneout=0.1)) == "fused"
    assert choose_engine("auto", "lstm", X32, None, locked, layer_norm=True) == "fused"


def test_locked_dropout_lstm_layer_auto_equals_fused():
    """What a user runs: a float32 LSTM with locked dropout under auto gives the fused engine's numbers
    for the same seed (within float32 rounding), gradients included."""
    m = rnnkit.LSTM(5, 7, num_layers=3, dropout=0.4, dropout_kind="locked", bidirectional=True, weight_drop=0.3)
    x = torch.randn(9, 4, 5)
    outs = []
    for engine in ("auto", "fused"):
        m.engine = engine
        xi = x.clone().requires_grad_()
        torch.manual_seed(3)
        y, (h, c) = m(xi)
        outs.append([y, h, c, *grads_of(loss_of([y, h, c]), [xi, *m.parameters()])])
    assert_all_close(outs[0], outs[1], [f"tensor {k}" for k in range(len(outs[0]))], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, training", [(dict(num_layers=1), True), (dict(num_layers=2, dropout=0.0), True),
                                              (dict(num_layers=2, dropout=0.5), False)],
                         ids=["one-layer", "no-dropout", "eval"])
def test_locked_kind_without_masks_runs_the_whole_stack_natively(monkeypatch, kwargs, training):
    """Where no mask goes between layers the dropout kind is moot: the whole stack is one torch call."""
    calls, real = [], native.run_stack
    monkeypatch.setattr(native, "run_stack", lambda *a, **k: calls.append("stack") or real(*a, **k))
    monkeypatch.setitem(dispatch._LAYER_FNS, "native-layers", lambda *a, **k: calls.append("layers"))
    m = rnnkit.LSTM(3, 4, dropout_kind="locked", **kwargs).train(training)
    ref = torch.nn.LSTM(3, 4, **kwargs).train(training)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(5, 2, 3)
    assert_all_close([m(x)[0]], [ref(x)[0]], ["y"])
    assert calls == ["stack"]


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_changing_the_output_in_place_before_backward_is_refused(name):
    """The README's known limit, as torch's own fused kernels behave: the fused engine saves the output for
    its backward pass, so an in-place change raises autograd's error instead of a wrong gradient."""
    m = getattr(rnnkit, name)(3, 4, engine="fused")
    y, _ = m(torch.randn(5, 2, 3, requires_grad=True))
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
