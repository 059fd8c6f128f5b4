"""The layers inside torch's contexts that change how a module runs: ``torch.autocast`` and the
``torch.func`` transforms (``dispatch`` decides; see its module docstring)."""
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.engine import dispatch, native
from rnnkit.engine.fused import packed_gemm, products

PAIRS = [(rnnkit.RNN, torch.nn.RNN), (rnnkit.GRU, torch.nn.GRU), (rnnkit.LSTM, torch.nn.LSTM)]
IDS = ["rnn", "gru", "lstm"]
BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def pair(kit_cls, torch_cls, **kw):
    torch.manual_seed(0)
    kit = kit_cls(4, 6, num_layers=2, **kw)
    ref = torch_cls(4, 6, num_layers=2)
    ref.load_state_dict(kit.state_dict())
    return kit, ref


@pytest.mark.parametrize("kit_cls, torch_cls", PAIRS, ids=IDS)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_autocast_plain_stack_computes_what_torch_computes(kit_cls, torch_cls, packed):
    if kit_cls is rnnkit.LSTM and not packed and not native._cpu_lstm_runs_in(torch.bfloat16):
        pytest.skip("torch.nn.LSTM fails here (oneDNN's bfloat16 LSTM needs AVX-512): "
                    "test_autocast_lstm_where_torchs_kernel_cannot_run")
    kit, ref = pair(kit_cls, torch_cls)
    x = torch.randn(5, 3, 4, requires_grad=True)
    def inp():
        return pack_padded_sequence(x, [5, 4, 2]) if packed else x

    with torch.autocast(**BF16):
        y, _ = kit(inp())
        y_ref, _ = ref(inp())
    if packed:
        y, y_ref = y.data, y_ref.data
    assert y.dtype == y_ref.dtype
    assert torch.equal(y, y_ref)
    (g,) = torch.autograd.grad(y.float().sum(), x)
    (g_ref,) = torch.autograd.grad(y_ref.float().sum(), x)
    assert torch.equal(g, g_ref)


def test_autocast_one_layer_with_locked_dropout_computes_what_torch_computes():
    """One layer has nothing between layers to drop: the kind is moot, and the whole stack runs on torch's kernel
    under autocast as torch.nn's does (one layer at a time it computed in float32)."""
    if not native._cpu_lstm_runs_in(torch.bfloat16):
        pytest.skip("torch.nn.LSTM fails here (oneDNN's bfloat16 LSTM needs AVX-512)")
    torch.manual_seed(0)
    kit = rnnkit.LSTM(4, 6, dropout=0.3, dropout_kind="locked")
    ref = torch.nn.LSTM(4, 6)
    ref.load_state_dict(kit.state_dict())
    x = torch.randn(5, 3, 4)
    with torch.autocast(**BF16):
        y, y_ref = kit(x)[0], ref(x)[0]
    assert y.dtype == y_ref.dtype == torch.bfloat16 and torch.equal(y, y_ref)


def test_the_autocast_probe_tells_whether_torch_nn_lstm_runs_here():
    """``native._cpu_lstm_runs_in`` answers what torch.nn.LSTM does with a float32 batch in a bfloat16
    autocast region on this CPU (it fails where oneDNN has no bfloat16 LSTM, i.e. without AVX-512)."""
    torch.manual_seed(0)
    try:
        with torch.autocast(**BF16):
            torch.nn.LSTM(4, 6)(torch.randn(5, 3, 4))
        runs = True
    except RuntimeError as e:
        assert "primitive descriptor" in str(e)
        runs = False
    assert native._cpu_lstm_runs_in(torch.bfloat16) is runs


@pytest.mark.parametrize("engine", ["auto", "native"])
@pytest.mark.parametrize("grad", [True, False], ids=["train", "infer"])
def test_autocast_lstm_where_torchs_kernel_cannot_run(monkeypatch, engine, grad):
    """Where torch's CPU LSTM kernel cannot take a float32 batch in the autocast's precision (forced here; real
    on CPUs without AVX-512), the stack runs torch's kernel in the parameters' dtype with autocast off — as
    every other engine runs inside autocast — instead of failing as torch.nn.LSTM does: the same numbers as
    torch.nn outside the region. A bfloat16 input, and a packed batch, still go as torch.nn's would."""
    monkeypatch.setattr(native, "_cpu_lstm_runs_in", lambda dtype: False)
    kit, ref = pair(rnnkit.LSTM, torch.nn.LSTM, engine=engine)
    x = torch.randn(5, 3, 4, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        with torch.autocast(**BF16):
            y, (h, c) = kit(x)
            y_bf16 = kit(x.detach().bfloat16())[0]
            y_packed = kit(pack_padded_sequence(x, [5, 4, 2]))[0].data
        y_ref, (h_ref, c_ref) = ref(x)
        with torch.autocast(**BF16):
            y_bf16_ref = ref(x.detach().bfloat16())[0]
            y_packed_ref = ref(pack_padded_sequence(x, [5, 4, 2]))[0].data
    assert y.dtype == h.dtype == torch.float32
    for a, e in ((y, y_ref), (h, h_ref), (c, c_ref), (y_bf16, y_bf16_ref), (y_packed, y_packed_ref)):
        assert a.dtype == e.dtype and torch.equal(a, e)
    if grad:
        assert torch.equal(torch.autograd.grad(y.sum(), x)[0], torch.autograd.grad(y_ref.sum(), x)[0])


@pytest.mark.parametrize("context", ["no_grad", "autocast"])
def test_locked_dropout_with_lengths_runs_in_training_without_grad_and_under_autocast(context):
    """With lengths the layers' masks are per step of each sequence: not torch's kernel one layer at a time,
    whatever the context (that path refused per-step masks inside the call)."""
    torch.manual_seed(0)
    m = rnnkit.LSTM(3, 4, num_layers=2, dropout=0.3, dropout_kind="locked").train()
    x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 4, 2])
    with torch.no_grad() if context == "no_grad" else torch.autocast(**BF16):
        y, _ = m(x, lengths=lengths)
    assert y.shape == (6, 3, 4) and torch.isfinite(y).all() and (y[4:, 2] == 0).all()


@pytest.mark.parametrize("kit_cls, torch_cls", PAIRS, ids=IDS)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("state", ["none", "bf16", "fp32"])
def test_autocast_plain_stack_given_lower_precision_input_computes_what_torch_computes(kit_cls, torch_cls, packed,
                                                                                      state):
    """A bfloat16 input (a Linear's output inside the region) with no state, a bfloat16 or a float32 one: torch's
    GRU kernel keeps the dtypes it is given (its output follows the state's), so the stack must pass them on
    as they came, not cast to the parameters' float32 first (it gave float32 and differed by ~2e-3)."""
    kit, ref = pair(kit_cls, torch_cls)
    x = torch.randn(5, 3, 4, requires_grad=True)
    h = None if state == "none" else torch.randn(2, 3, 6, dtype=torch.bfloat16 if state == "bf16" else torch.float32)
    hx = (h, torch.randn(2, 3, 6, dtype=h.dtype)) if h is not None and torch_cls is torch.nn.LSTM else h

    def run(m):
        with torch.autocast(**BF16):
            z = x.to(torch.bfloat16)
            y, s = m(pack_padded_sequence(z, [5, 4, 2]) if packed else z, hx)
        return (y.data if packed else y), s

    (y, s), (y_ref, s_ref) = run(kit), run(ref)
    assert y.dtype == y_ref.dtype
    assert torch.equal(y, y_ref)
    for a, b in zip(s if isinstance(s, tuple) else (s,), s_ref if isinstance(s_ref, tuple) else (s_ref,)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    (g,) = torch.autograd.grad(y.float().sum(), x)
    (g_ref,) = torch.autograd.grad(y_ref.float().sum(), x)
    assert torch.equal(g, g_ref)


OTHER_ENGINES = [dict(engine="fused"), dict(engine="reference"), dict(zoneout=0.2),
                 dict(dropout=0.3, dropout_kind="locked"), dict(layer_norm=True)]


@pytest.mark.parametrize("kit_cls, kw", [(c, kw) for c in (rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM) for kw in OTHER_ENGINES
                                         if not (c is rnnkit.RNN and "layer_norm" in kw)],  # LN: LSTM and GRU
                         ids=lambda v: v.__name__ if isinstance(v, type) else "-".join(map(str, v.items())))
def test_autocast_other_engines_compute_in_the_parameters_dtype(kit_cls, kw):
    torch.manual_seed(0)
    m = kit_cls(4, 6, num_layers=2, **kw)
    x = torch.randn(5, 3, 4, requires_grad=True)
    torch.manual_seed(1)
    with torch.autocast(**BF16):
        y, _ = m(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.manual_seed(1)
    y_plain, _ = m(x)  # the same masks for the same seed
    (g_plain,) = torch.autograd.grad(y_plain.sum(), x)
    assert y.dtype == torch.float32  # and float32's precision, not bfloat16's (~1e-2):
    torch.testing.assert_close(y, y_plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g, g_plain, rtol=1e-6, atol=1e-6)


FUSED = [dict(engine="fused"), dict(zoneout=0.2), dict(layer_norm=True), dict(engine="fused", bidirectional=True)]


@pytest.mark.parametrize("kit_cls, kw", [(c, kw) for c in (rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM) for kw in FUSED
                                         if not (c is rnnkit.RNN and "layer_norm" in kw)],
                         ids=lambda v: v.__name__ if isinstance(v, type) else "-".join(map(str, v.items())))
def test_fused_backward_inside_autocast_equals_backward_outside(kit_cls, kw):
    """The fused engine's hand-written backward passes run with autocast off, as their forward passes did
    (called inside the region, autocast cast their products to bfloat16 and crashed on mixed dtypes)."""
    torch.manual_seed(0)
    m = kit_cls(4, 6, num_layers=2, **kw)
    x = torch.randn(5, 3, 4, requires_grad=True)
    grads = []
    for inside in (True, False):
        torch.manual_seed(1)
        x.grad = None
        m.zero_grad(set_to_none=True)
        with torch.autocast(**BF16):
            y, _ = m(x)
            loss = y.float().square().sum() + m(2 * x)[0].float().sum()
            if inside:
                loss.backward()
        if not inside:
            loss.backward()
        grads.append([x.grad] + [p.grad for p in m.parameters()])
    for g, g_out in zip(*grads):
        torch.testing.assert_close(g, g_out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kit_cls", [rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM], ids=IDS)
@pytest.mark.parametrize("kw", [{}, dict(engine="fused"), dict(zoneout=0.1)], ids=["auto", "fused", "zoneout"])
def test_autocast_accepts_inputs_in_its_precision(kit_cls, kw):
    """The output of a Linear inside autocast is bfloat16; torch.nn takes it, and so does rnnkit."""
    torch.manual_seed(0)
    lin, m = torch.nn.Linear(4, 4), kit_cls(4, 6, **kw)
    x = torch.randn(5, 3, 4)
    with torch.autocast(**BF16):
        h = lin(x)
        assert h.dtype == torch.bfloat16
        y, h_n = m(h, torch.zeros(1, 3, 6, dtype=torch.bfloat16) if kit_cls is not rnnkit.LSTM else None)
        packed_y, _ = m(pack_padded_sequence(h, [5, 3, 1]))
    y.float().sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    assert packed_y.data.shape == (9, 6)


@pytest.mark.parametrize("cell_cls", [rnnkit.RNNCell, rnnkit.GRUCell, rnnkit.LSTMCell])
def test_autocast_cells_accept_inputs_in_its_precision(cell_cls):
    """…and compute in their parameters' dtype with autocast off: exactly the cell outside autocast on
    that input (before, the cell's products ran in bfloat16 and its output was float32, off by ~2e-3)."""
    torch.manual_seed(0)
    lin, cell = torch.nn.Linear(4, 4), cell_cls(4, 6, zoneout=0.2).eval()
    with torch.autocast(**BF16):
        a = lin(torch.randn(3, 4))
        out = cell(a)
    assert a.dtype == torch.bfloat16
    ref = cell(a.float())
    for got, want in zip(*(o if isinstance(o, tuple) else (o,) for o in (out, ref))):
        assert got.dtype == torch.float32
        assert torch.equal(got, want)


def test_outside_autocast_a_dtype_mismatch_is_still_an_error():
    with pytest.raises(TypeError, match="must have dtype torch.float32"):
        rnnkit.GRU(4, 6)(torch.randn(5, 3, 4, dtype=torch.bfloat16))


def test_dispatch_under_autocast_and_transforms():
    x = torch.randn(dispatch.FUSED_MIN_STEPS, 3, 4)
    assert dispatch.choose_engine("auto", "gru", x, None) == "fused"
    with torch.autocast(**BF16):
        assert dispatch.choose_engine("auto", "gru", x, None) == "native"
        assert dispatch.choose_engine("auto", "gru", x, None, layer_norm=True) == "fused"
    seen = []
    torch.func.grad(lambda t: (seen.append(dispatch.choose_engine("auto", "gru", t, None)),
                               t.sum())[1])(x)
    assert seen == ["reference"]
    assert dispatch.autocast_dtype(torch.device("meta")) is None


@pytest.mark.parametrize("kit_cls, torch_cls", PAIRS, ids=IDS)
def test_torch_func_grad_equals_torch_nn(kit_cls, torch_cls):
    kit, ref = pair(kit_cls, torch_cls)
    kit, ref = kit.double(), ref.double()
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    params = {k: v.detach() for k, v in kit.named_parameters()}

    def loss(module):
        return lambda p: torch.func.functional_call(module, p, (x,))[0].pow(2).sum()

    g, g_ref = torch.func.grad(loss(kit))(params), torch.func.grad(loss(ref))(params)
    for k in params:
        torch.testing.assert_close(g[k], g_ref[k])


def test_torch_func_vmap_over_unbatched_sequences():
    torch.manual_seed(0)
    m = rnnkit.GRU(4, 6).double()
    xs = torch.randn(3, 5, 4, dtype=torch.float64)  # three unbatched (T, I) sequences
    ys = torch.func.vmap(lambda x: m(x)[0])(xs)
    expected = torch.stack([m(x)[0] for x in xs])
    torch.testing.assert_close(ys, expected)


def test_torch_func_with_the_fused_engine_names_the_way_out():
    m = rnnkit.GRU(4, 6, engine="fused")
    params = {k: v.detach() for k, v in m.named_parameters()}
    with pytest.raises(ValueError, match="torch.func transforms.*engine='auto' or 'reference'"):
        torch.func.grad(lambda p: torch.func.functional_call(m, p, (torch.randn(5, 3, 4),))[0].sum())(params)


@pytest.mark.parametrize("kit_cls, torch_cls", PAIRS, ids=IDS)
def test_forward_mode_ad_equals_torch_nn(kit_cls, torch_cls):
    """Dual tensors (``torch.autograd.forward_ad``) through ``auto``: the fused engine's Functions have no
    ``jvp``, so inside a dual level ``auto`` runs torch's kernel (this configuration — float64, training —
    would otherwise run fused). (Padded input only: torch's ``pack_padded_sequence`` has no forward AD.)"""
    import torch.autograd.forward_ad as fwAD
    kit, ref = pair(kit_cls, torch_cls)
    kit, ref = kit.double(), ref.double()
    x, t = torch.randn(dispatch.FUSED_MIN_STEPS, 3, 4, dtype=torch.float64), torch.randn(dispatch.FUSED_MIN_STEPS, 3, 4,
                                                                                       dtype=torch.float64)
    outs = []
    for m in (kit, ref):
        with fwAD.dual_level():
            d = fwAD.make_dual(x, t)
            outs.append(fwAD.unpack_dual(m(d)[0]))
    torch.testing.assert_close(outs[0].primal, outs[1].primal)
    torch.testing.assert_close(outs[0].tangent, outs[1].tangent)


@pytest.mark.parametrize("kit_cls", [rnnkit.GRU, rnnkit.LSTM], ids=["gru", "lstm"])
def test_forward_mode_ad_with_an_option_runs_the_reference_cells(kit_cls):
    """Layer norm (no torch kernel): the tangent equals J t computed in reverse mode, as the vector-Jacobian
    product's derivative with respect to the vector (float64; a central difference is too coarse here: the
    norm of a zero first recurrent part makes the output's curvature large)."""
    import torch.autograd.forward_ad as fwAD
    torch.manual_seed(0)
    m = kit_cls(4, 6, num_layers=2, layer_norm=True).double()
    x, t = torch.randn(12, 3, 4, dtype=torch.float64), torch.randn(12, 3, 4, dtype=torch.float64)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(m(fwAD.make_dual(x, t))[0]).tangent
    m.engine = "reference"
    x.requires_grad_()
    y = m(x)[0]
    v = torch.zeros_like(y, requires_grad=True)
    (vjp,) = torch.autograd.grad(y, x, v, create_graph=True)
    (jt,) = torch.autograd.grad(vjp, v, t)
    torch.testing.assert_close(tangent, jt)


def test_forward_mode_ad_with_the_fused_engine_names_the_way_out():
    import torch.autograd.forward_ad as fwAD
    m = rnnkit.GRU(4, 6, engine="fused")
    with fwAD.dual_level(), pytest.raises(ValueError, match="forward-mode.*engine='auto', 'native' or 'reference'"):
        m(fwAD.make_dual(torch.randn(12, 3, 4), torch.randn(12, 3, 4)))


@pytest.mark.parametrize("kit_cls, torch_cls", PAIRS, ids=IDS)
def test_a_batched_backward_pass_is_refused_by_name_on_the_fused_engine(kit_cls, torch_cls):
    """``is_grads_batched`` (and ``jacobian(vectorize=True)``, which uses it) vmaps the backward pass, which
    starts after ``auto`` chose the engine: the fused engine says so and names the engines that can; the
    reference engine computes what torch.nn does."""
    kit, ref = pair(kit_cls, torch_cls)
    kit, ref = kit.double(), ref.double()
    x = torch.randn(12, 3, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 12, 3, 6, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="batched backward pass.*engine='reference'"):
        torch.autograd.grad(kit(x)[0], x, v, is_grads_batched=True)
    kit.engine = "reference"
    (g,) = torch.autograd.grad(kit(x)[0], x, v, is_grads_batched=True)
    (g_ref,) = torch.autograd.grad(ref(x)[0], x, v, is_grads_batched=True)
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("kit_cls, kw", [(rnnkit.GRU, {}), (rnnkit.RNN, {}), (rnnkit.LSTM, {}),
                                         (rnnkit.GRU, dict(layer_norm=True)), (rnnkit.LSTM, dict(zoneout=0.1))],
                         ids=["gru", "rnn", "lstm", "gru-layer_norm", "lstm-zoneout"])
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the tracer's note on Python-side checks
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # deprecated in torch 2.13, still there
def test_jit_trace_records_the_layer(kit_cls, kw):
    """``auto`` records torch's kernel (or the reference cells for options torch lacks): the traced module
    computes what the module computes, on inputs other than the one it was traced with."""
    torch.manual_seed(0)
    m = kit_cls(4, 6, num_layers=2, **kw).eval()
    traced = torch.jit.trace(m, (torch.randn(5, 3, 4),))
    x = torch.randn(5, 3, 4)
    torch.testing.assert_close(traced(x)[0], m(x)[0])
    if not kw:  # torch's kernel: any length
        x = torch.randn(8, 2, 4)
        torch.testing.assert_close(traced(x)[0], m(x)[0])


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_a_recorded_reference_loop_says_it_is_fixed_to_the_traced_length():
    """The reference engine's Python loop, traced at T = 5, replays 5 steps for any input (torch.nn's kernel
    does not): the trace warns by name, in the warning category torch uses for such traces."""
    m = rnnkit.GRU(4, 6, layer_norm=True).eval()
    with pytest.warns(torch.jit.TracerWarning, match="rnnkit: a trace or export of the reference engine.*5 steps"):
        torch.jit.trace(m, (torch.randn(5, 3, 4),))


@pytest.mark.parametrize("kit_cls, dtype", [(rnnkit.GRU, torch.float32), (rnnkit.LSTM, torch.float64)])
def test_torch_export_records_a_graph_that_trains(kit_cls, dtype):
    """Where ``auto`` runs the fused engine (a GRU of 12 steps, a float64 LSTM), an export recorded its
    out= and in-place ops, which the exported program cannot differentiate: it records torch's kernel."""
    torch.manual_seed(0)
    m = kit_cls(4, 6, dtype=dtype)
    x = torch.randn(12, 3, 4, dtype=dtype)
    program = torch.export.export(m, (x,))
    y = program.module()(x.requires_grad_())[0]
    torch.testing.assert_close(y, m(x)[0])
    y.sum().backward()
    assert x.grad is not None
    m.engine = "fused"
    with pytest.raises(ValueError, match="engine='fused' cannot be recorded by torch.jit.trace or torch.export"):
        torch.export.export(m, (x,))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_jit_trace_with_the_fused_engine_names_the_way_out():
    m = rnnkit.GRU(4, 6, engine="fused")
    with pytest.raises(ValueError, match="torch.jit.trace.*engine='auto' or 'native'"):
        torch.jit.trace(m, (torch.randn(5, 3, 4),))


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("path, device", [("addmm", "cpu"), ("onednn", "cpu"), ("mkl_packed", "cpu"), ("addmm", "cuda")],
                         ids=["addmm", "onednn_size", "mkl_packed", "cuda"])
def test_torch_compile_runs_the_fused_engine_eagerly(path, device, packed, monkeypatch):
    """Dynamo does not trace the engine: it runs eagerly between the compiled graphs (traced, torch 2.11 gave
    a zero input gradient, seen on the GPU machine's CPU and GPU; torch 2.13 compiled it for minutes into
    graphs three times slower). Outputs and every gradient are the eager ones, also at a size whose per-step
    products go through oneDNN or MKL's packed GEMM (``engine/fused/products.py``)."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if path == "mkl_packed" and not packed_gemm.available(torch.float32):
        pytest.skip("MKL's packed GEMM: not in this torch")
    # as a large layer would be: every product through the path (MKL's packed GEMM comes first where it loaded)
    monkeypatch.setattr(products, "ONEDNN_MIN_ELEMENTS", 1 if path == "onednn" else 10**12)
    monkeypatch.setattr(products, "PACKED_MIN_ELEMENTS", 1 if path == "mkl_packed" else 10**12)
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = rnnkit.LSTM(4, 6, engine="fused", num_layers=2).to(device)
    x = torch.randn(5, 3, 4, requires_grad=True, device=device)
    given = lambda: pack_padded_sequence(x, [5, 4, 2]) if packed else x  # noqa: E731 (one graph per call)
    reasons = [str(r.reason) for r in torch._dynamo.explain(m)(given()).break_reasons]
    assert any("torch.compiler.disable" in r and "run_" in r for r in reasons), reasons
    assert not [r for r in reasons if "out=" in r or "mark_dirty" in r], reasons  # (from inside the engine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y, _ = torch.compile(m)(given())
    assert not [w for w in caught if "Dynamo" in str(w.message)]
    y_eager, _ = m(given())
    y, y_eager = (y.data, y_eager.data) if packed else (y, y_eager)
    grads = torch.autograd.grad(y.sum(), [x, *m.parameters()])
    grads_eager = torch.autograd.grad(y_eager.sum(), [x, *m.parameters()])
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(grads, grads_eager)
    torch._dynamo.reset()


@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "dropout": 0.3, "dropout_kind": "locked"},
                                     {"weight_drop": 0.3}], ids=["plain", "locked", "weight_drop"])
def test_torch_compile_runs_torchs_kernels_eagerly(options):
    """A float32 LSTM trained on data that needs no gradient runs torch's kernel (``auto``): traced, Inductor's
    lowering of ``mkldnn_rnn_layer`` failed ("expected Tensor() for op"); it now runs eagerly between the
    graphs, as torch.nn's layers do, and its gradients are the eager ones (the same masks after one seed)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = rnnkit.LSTM(4, 6, **options)
    x = torch.randn(5, 3, 4)
    grads = []
    for f in (torch.compile(m), m):
        torch.manual_seed(1)
        y, _ = f(x)
        grads.append(torch.autograd.grad(y.pow(2).mean(), list(m.parameters())))
    torch.testing.assert_close(grads[0], grads[1])
    reasons = [str(r.reason) for r in torch._dynamo.explain(m)(x).break_reasons]
    assert any("torch's recurrent kernels" in r for r in reasons), reasons
    torch._dynamo.reset()


def test_compile_with_fullgraph_names_the_engine_it_can_take():
    torch._dynamo.reset()
    m = rnnkit.GRU(4, 6)
    x = torch.randn(5, 3, 4, requires_grad=True)
    with pytest.raises(Exception, match="fullgraph=True use engine='reference'"):
        torch.compile(m, fullgraph=True)(x)
    m.engine = "reference"
    y, _ = torch.compile(m, fullgraph=True)(x)
    torch.testing.assert_close(y, m(x)[0])
    torch._dynamo.reset()


def test_compiled_generation_picks_the_eager_tokens():
    """The step kernel's oneDNN products (a few rows: a batch of prompts, or beams) could not be lowered by
    Inductor; the kernel runs eagerly under torch.compile."""
    from rnnkit.models import LanguageModel

    torch._dynamo.reset()
    torch.manual_seed(0)
    lm = LanguageModel(vocab_size=20, embed_size=4, hidden_size=8).eval()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    for kw in ({}, {"method": "beam", "beam_width": 2}):
        compiled = torch.compile(lambda p, kw=kw: lm.generate(p, max_new_tokens=4, **kw).tokens)
        assert torch.equal(compiled(prompt), lm.generate(prompt, max_new_tokens=4, **kw).tokens), kw
        torch._dynamo.reset()


def test_per_sample_gradients_of_the_models_with_vmap():
    """``vmap(grad(loss))`` over a batch: the models' input checks read no values inside a torch.func
    transform (vmap refused the data-dependent test), and each row's gradient is that of the row alone."""
    from torch.func import functional_call, grad, vmap

    from rnnkit.models import Forecaster, LanguageModel

    torch.manual_seed(0)
    lm = LanguageModel(vocab_size=20, embed_size=4, hidden_size=8).double()
    forecaster = Forecaster(hidden_size=8).double()
    cases = [(lm, torch.randint(1, 20, (3, 6)), lambda out: out[0].logsumexp(-1).sum()),
             (forecaster, torch.randn(3, 6, 1, dtype=torch.float64), lambda out: out.pow(2).sum())]
    for model, data, reduce in cases:
        params = {k: v.detach() for k, v in model.named_parameters()}

        def loss_one(p, row, model=model, reduce=reduce):
            return reduce(functional_call(model, p, (row.unsqueeze(0),)))

        per_sample = vmap(grad(loss_one), in_dims=(None, 0))(params, data)
        for i in range(len(data)):
            alone = grad(loss_one)(params, data[i])
            for k in params:
                torch.testing.assert_close(per_sample[k][i], alone[k])
    with pytest.raises(ValueError, match="25"):  # (outside a transform the values are checked)
        lm.loss(torch.tensor([[1, 25]]))


@pytest.mark.parametrize("engine", ["auto", "fused", "reference", "native"])
@pytest.mark.parametrize("packed", [False, True])
def test_a_state_from_inference_mode_starts_a_recorded_call(engine, packed):
    """h computed under torch.inference_mode(), then given as hx to a call autograd records (a warm state
    for training): the call runs and its gradients equal those from the same state made without it."""
    torch.manual_seed(0)
    gru = rnnkit.GRU(4, 5, engine=engine)
    x = torch.randn(3, 2, 4)
    inp = pack_padded_sequence(x, [3, 2], enforce_sorted=False) if packed else x
    with torch.inference_mode():
        _, h_inf = gru(inp)
    with torch.no_grad():
        _, h = gru(inp)
    grads = []
    for state in (h_inf, h):
        gru.zero_grad()
        out, _ = gru(inp, state)
        (out.data if packed else out).sum().backward()
        grads.append(gru.weight_hh_l0.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("engine", ["auto", "reference", "fused", "native"])
@pytest.mark.parametrize("fmt", ["lengths_list", "lengths", "packed"])
def test_another_default_device_does_not_reach_the_engines_bookkeeping(engine, fmt):
    """A script that ran ``torch.set_default_device("cuda")`` and made its layer on the CPU (or the other way
    round): the engines' lengths, orders and row indices are made on the CPU where they are kept, not on
    torch's default device (the fused engine mixed a CUDA ``arange`` with CPU lengths). The meta device
    plays the other device here, in CI."""
    torch.manual_seed(0)
    m = rnnkit.LSTM(4, 5, num_layers=2, bidirectional=True, engine=engine)
    x, lengths = torch.randn(6, 3, 4), [6, 2, 4]
    inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if fmt == "packed" else x
    kw = {} if fmt == "packed" else {"lengths": lengths if fmt == "lengths_list" else torch.tensor(lengths)}
    expected = m(inp, **kw)
    with torch.device("meta"):
        got = m(inp, **kw)
    if fmt == "packed":
        (got, *rest), (expected, *rest_expected) = got, expected
        got, expected = [got.data, *rest], [expected.data, *rest_expected]
    assert got[0].device.type == "cpu"
    torch.testing.assert_close(got, expected)
