"""The compiled element-wise step of the fused RNN, LSTM and GRU (``rnnkit/engine/fused/step_kernels.c``).

Where it is built (CPU, float32/float64) the whole suite runs the fused engine through it, so every
parity and gradcheck test elsewhere checks it against torch.nn and the reference cells. This file
checks the other side and the seams:

- the two paths of the fused loops — compiled step and torch's operators — give the same outputs and
  every gradient for each option (none, recurrent mask, zoneout masks and expectation, layer norm, all
  at once), with and without lengths, forwards and reversed, in float64 and float32 (the vanilla RNN's
  two paths differ more than the others': the operator path computes tanh through scaled weights);
- the torch-operator path still passes ``gradcheck`` (it is what CUDA and other dtypes run);
- an initial state whose rows are not contiguous takes torch's operators and still equals torch.nn;
- the library is built wherever a C compiler is, a library of another version is refused with a
  warning, ``RNNKIT_STEP_KERNELS=0`` switches it off, and loading it leaves the process's floating-point
  mode alone (denormals still work: GCC's fast-math start-up code is not linked in).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from core_helpers import DT, MODE_IDS, MODES_PROJ, grads_of, loss_of, random
from test_variants import ENGINE_LENGTHS, ENGINE_OPTIONS, engine_call, engine_leaves, engine_noise, engine_supports

import rnnkit
from rnnkit.engine import Noise, fused
from rnnkit.engine.fused import step_kernels

needs_kernels = pytest.mark.skipif(not step_kernels.available(), reason=f"step kernels: {step_kernels.WHY_NOT}")

MODES = list(zip(MODES_PROJ, MODE_IDS))
CASES = [(mp, name, o, ln, r) for (mp, name), o, ln, r in itertools.product(MODES, ("plain", *ENGINE_OPTIONS),
                                                                            ENGINE_LENGTHS, (False, True))
         if engine_supports(mp[0], o)]


def run_fused(mode, proj, option, lengths, reverse, dtype, compiled: bool):
    """Outputs and every leaf's gradient of one fused layer run, on the chosen path."""
    ln = option in ("layer_norm", "combined") and engine_supports(mode, "layer_norm")
    T, B, I, H = 5, 4, 3, 4
    base = engine_leaves(mode, proj, ln, T, B, I, H, seed=7)
    noise = engine_noise(option, mode, proj, T, B, H)
    noise = Noise(*(z.to(dtype) if isinstance(z, torch.Tensor) else z for z in noise))
    leaves = {k: v.to(dtype).requires_grad_() for k, v in base.items()}
    call = engine_call(fused.run_layer, mode, list(leaves), noise, ENGINE_LENGTHS[lengths], reverse)
    with contextlib.nullcontext() if compiled else step_kernels.disabled():
        outs = list(call(*leaves.values()))
        grads = grads_of(loss_of([o.double() for o in outs]), list(leaves.values()))
    return outs + grads, ["y", "h_n", "c_n"][: len(outs)] + [f"grad {n}" for n in leaves]


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode_proj, name, option, lengths, reverse", CASES,
                         ids=[f"{n}-{o}-{ln}-rev={r}" for _, n, o, ln, r in CASES])
def test_compiled_step_equals_torch_operators(mode_proj, name, option, lengths, reverse, dtype):
    mode, proj = mode_proj
    compiled, names = run_fused(mode, proj, option, lengths, reverse, dtype, compiled=True)
    ops, _ = run_fused(mode, proj, option, lengths, reverse, dtype, compiled=False)
    # float64 is the exact check; float32 only sees that the dtype is carried (the two paths sum in different
    # orders: a layer norm's gradient at an entry of 0.01 differed by 1.6e-5 on an AVX-512 machine)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for a, e, n in zip(compiled, ops, names):
        assert a.dtype == dtype, n
        torch.testing.assert_close(a, e, **tol, msg=lambda m, n=n: f"{name} {option}, {n}: {m}")


@needs_kernels
def test_the_compiled_step_is_taken_where_it_loaded(monkeypatch):
    """The layers reach it: a float32 layer-normalised LSTM and GRU, a plain GRU, and an RNN plain and with
    zoneout, on the CPU call it once per step, forwards and backwards, and not at all under ``disabled()``."""
    calls = []

    def record(name, fn):
        return lambda *a, **k: (calls.append(name), fn(*a, **k))[1]

    names = ["gru_backward", "gru_backward_plain", "gru_forward", "lstm_backward", "lstm_forward", "rnn_backward",
             "rnn_forward"]
    for fn in names:
        monkeypatch.setattr(step_kernels, fn, record(fn, getattr(step_kernels, fn)))
    rows = step_kernels.rnn_rows
    monkeypatch.setattr(step_kernels, "rnn_rows", lambda dtype: tuple(
        record(n, f) for n, f in zip(("rnn_activate", "rnn_backward_rows"), rows(dtype))))
    for layer in (rnnkit.LSTM(3, 4, layer_norm=True), rnnkit.GRU(3, 4, layer_norm=True), rnnkit.GRU(3, 4, engine="fused"),
                  rnnkit.RNN(3, 4, engine="fused"), rnnkit.RNN(3, 4, engine="fused", zoneout=0.2)):
        x = torch.randn(6, 2, 3)
        layer(x)[0].sum().backward()
        with step_kernels.disabled():
            layer(x)[0].sum().backward()
    assert sorted(set(calls)) == sorted(names + ["rnn_activate", "rnn_backward_rows"])
    assert all(calls.count(fn) == (12 if fn == "gru_forward" else 6) for fn in set(calls)), calls


@pytest.mark.parametrize("mode, proj", [mp for mp, _ in MODES], ids=[n for _, n in MODES])
def test_torch_operator_path_gradcheck_every_option_at_once(mode, proj):
    """The path CUDA and other dtypes run: every option, variable lengths, reversed, whole Jacobian."""
    T, B, I, H = 3, 3, 2, 2
    t = engine_leaves(mode, proj and 1, engine_supports(mode, "layer_norm"), T, B, I, H, seed=12)
    noise = engine_noise("combined", mode, proj and 1, T, B, H)
    call = engine_call(fused.run_layer, mode, list(t), noise, [3, 1, 2], True)
    with step_kernels.disabled():
        assert torch.autograd.gradcheck(call, [v.requires_grad_() for v in t.values()])


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_initial_state_with_strided_rows_equals_torch_nn(cell):
    """h0 (and c0) whose hidden units are not adjacent in memory (a transposed block): the compiled step
    reads rows with unit stride, so such a state takes torch's operators — same numbers as torch.nn."""
    torch.manual_seed(0)
    ours = getattr(rnnkit, cell)(3, 4, num_layers=2, engine="fused", dtype=DT)
    theirs = getattr(torch.nn, cell)(3, 4, num_layers=2, dtype=DT)
    theirs.load_state_dict(ours.state_dict())
    x = random(5, 2, 3, seed=1)
    h0 = random(2, 4, 2, seed=2).transpose(1, 2)  # (layers, B, H) with stride 1 between batch rows
    assert h0.stride(-1) != 1
    state = (h0, random(2, 4, 2, seed=3).transpose(1, 2)) if cell == "LSTM" else h0
    y, s = ours(x, state)
    y_ref, s_ref = theirs(x, state)
    torch.testing.assert_close(y, y_ref)
    for a, e in zip(s if cell == "LSTM" else [s], s_ref if cell == "LSTM" else [s_ref]):
        torch.testing.assert_close(a, e)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_built_wherever_a_compiler_is():
    """``make setup`` (pip install -e .) builds the library; with a compiler at hand it must have loaded (unless
    this run switched it off)."""
    if os.environ.get("RNNKIT_STEP_KERNELS", "1") == "0":
        pytest.skip("switched off by RNNKIT_STEP_KERNELS=0 for this run")
    assert step_kernels.available(), step_kernels.WHY_NOT


def _in_a_fresh_process(code: str, **env) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_environment_switch_turns_it_off():
    out = _in_a_fresh_process("from rnnkit.engine.fused import step_kernels as s; print(s.available(), s.WHY_NOT)",
                              RNNKIT_STEP_KERNELS="0")
    assert out == "False switched off by RNNKIT_STEP_KERNELS=0"


@needs_kernels
def test_a_library_of_another_version_is_refused(monkeypatch):
    built = step_kernels.VERSION
    monkeypatch.setattr(step_kernels, "VERSION", built + 1)
    with pytest.warns(RuntimeWarning, match=rf"version {built} of the step kernels, this rnnkit expects {built + 1}.*reinstall"):
        table, why = step_kernels._load()
    assert table is None and why.startswith("stale build")


@needs_kernels
def test_loading_it_leaves_denormals_alone():
    """GCC links crtfastmath (flush denormals to zero, for the whole process) into a library linked with
    -ffast-math; the build gives that flag to the compiler only."""
    out = _in_a_fresh_process(
        "import numpy as np, torch\n"
        "from rnnkit.engine.fused import step_kernels as s\n"
        "assert s.available()\n"
        "print(float(np.float32(1e-39) / np.float32(2)) > 0, float(torch.tensor(1e-39) / 2) > 0)")
    assert out == "True True"
    assert float(np.float32(1e-39) / np.float32(2)) > 0


@pytest.mark.parametrize("strided", ["h0", "c0"])
def test_lstm_zoneout_with_one_strided_initial_state_equals_reference(strided):
    """Zoneout reads h_{t-1} in the compiled step: an h0 (or c0) alone with hidden units apart in memory
    sends the layer to torch's operators, and eval mode's expected zoneout equals the reference cells."""
    torch.manual_seed(0)
    fused_layer = rnnkit.LSTM(3, 4, engine="fused", zoneout=0.3, dtype=DT).eval()
    ref = rnnkit.LSTM(3, 4, engine="reference", zoneout=0.3, dtype=DT).eval()
    ref.load_state_dict(fused_layer.state_dict())
    x = random(5, 2, 3, seed=1)
    spread = random(1, 4, 2, seed=2).transpose(1, 2)  # (1, B, H) with the batch rows adjacent in memory
    plain = random(1, 2, 4, seed=3)
    state = (spread, plain) if strided == "h0" else (plain, spread)
    assert state[strided == "c0"].stride(-1) != 1
    for a, e in zip(torch.utils._pytree.tree_leaves(fused_layer(x, state)),
                    torch.utils._pytree.tree_leaves(ref(x, state))):
        torch.testing.assert_close(a, e)


@needs_kernels
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_step_carries_nan_like_torch_nn(nonlinearity):
    """A NaN in the input stays a NaN through the compiled step (no max(x, 0) that would turn it into 0):
    a diverged run must show as one, where torch.nn's would."""
    torch.manual_seed(0)
    ours = rnnkit.RNN(3, 4, nonlinearity=nonlinearity, engine="fused")
    theirs = torch.nn.RNN(3, 4, nonlinearity=nonlinearity)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, 3)
    x[2, 1, 0] = float("nan")
    y, h = ours(x)
    y_ref, h_ref = theirs(x)
    assert torch.equal(y.isnan(), y_ref.isnan()) and y.isnan().any()
    assert torch.equal(h.isnan(), h_ref.isnan())


def _bidirectional_run(layer, x, h0, use, compiled: bool):
    """Outputs of a bidirectional layer (y, h_n, or both summed into the loss) and the gradients of x, h0
    and every parameter."""
    params = list(layer.parameters())
    with contextlib.nullcontext() if compiled else step_kernels.disabled():
        y, h = layer(x, h0)
        loss = {"y": (y * y).sum(), "h": (h * h).sum(), "both": (y * y).sum() + (h[::2] * h[::2]).sum()}[use]
        grads = torch.autograd.grad(loss, [x] + ([h0] if h0 is not None else []) + params)
    return [y, h, *grads]


@needs_kernels
@pytest.mark.parametrize("nonlinearity, bias, T, given_h0, use",
                         [("tanh", True, 5, True, "both"), ("relu", True, 5, False, "both"),
                          ("tanh", False, 1, True, "both"), ("tanh", True, 4, False, "y"),
                          ("relu", False, 3, True, "h")])
def test_bidirectional_rnn_layers_at_once_equal_one_direction_at_a_time(monkeypatch, nonlinearity, bias, T,
                                                                         given_h0, use):
    """Both directions of a vanilla RNN layer in one pass over one block (``fused.run_bidirectional``: no
    reversed copies, one projection for both) equal the per-direction path on torch's operators — outputs
    and every gradient, float64, two layers, with only y, only h_n or both in the loss."""
    ran = []
    pair = fused.run_bidirectional
    monkeypatch.setattr(fused, "run_bidirectional", lambda *a, **k: (lambda r: (ran.append(r is not None), r)[1])(
        pair(*a, **k)))
    torch.manual_seed(0)
    layer = rnnkit.RNN(3, 4, num_layers=2, bidirectional=True, nonlinearity=nonlinearity, bias=bias,
                       engine="fused", dtype=DT)
    x = random(T, 2, 3, seed=1).requires_grad_()
    h0 = random(4, 2, 4, seed=2).requires_grad_() if given_h0 else None
    at_once = _bidirectional_run(layer, x, h0, use, compiled=True)
    assert ran == [True, True]
    one_at_a_time = _bidirectional_run(layer, x, h0, use, compiled=False)
    for a, e in zip(at_once, one_at_a_time):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-13)


@needs_kernels
def test_bidirectional_rnn_layer_gradcheck():
    torch.manual_seed(0)
    w = [rnnkit.engine.LayerWeights(*(random(*s, seed=10 * d + i, scale=0.5).requires_grad_()
                                      for i, s in enumerate([(3, 2), (3, 3), (3,), (3,)])))
         for d in range(2)]
    x = random(4, 2, 2, seed=30).requires_grad_()
    h0 = [random(2, 3, seed=31 + d).requires_grad_() for d in range(2)]

    def f(x, h0_f, h0_r, *flat):
        wf, wr = rnnkit.engine.LayerWeights(*flat[:4]), rnnkit.engine.LayerWeights(*flat[4:])
        return fused.rnn.rnn_bidirectional_layer(x, h0_f, h0_r, wf, wr, relu=False)

    assert torch.autograd.gradcheck(f, [x, *h0, *w[0][:4], *w[1][:4]])


@needs_kernels
def test_bidirectional_rnn_at_hidden_512_float32_equals_torch_nn():
    """Hidden size 512 in float32: the step products go through oneDNN's reordered weights where this CPU has
    it (``products.StepProduct``), reading each direction's rows 2H apart."""
    torch.manual_seed(0)
    ours = rnnkit.RNN(8, 512, bidirectional=True, engine="fused")
    theirs = torch.nn.RNN(8, 512, bidirectional=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, 3, 8, requires_grad=True)
    (y, h), (y_ref, h_ref) = ours(x), theirs(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-4, atol=1e-5)
    g = torch.autograd.grad((y * y).sum(), [x, *ours.parameters()])
    g_ref = torch.autograd.grad((y_ref * y_ref).sum(), [x, *theirs.parameters()])
    for a, e in zip(g, g_ref):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cell, options", [("LSTM", {}), ("LSTM", {"zoneout": 0.2}), ("GRU", {}),
                                           ("GRU", {"layer_norm": True}), ("RNN", {}), ("RNN", {"zoneout": 0.2}),
                                           ("RNN", {"bidirectional": True})])
def test_final_state_gradient_with_hidden_units_apart_in_memory_equals_reference(cell, options):
    """∂L/∂h_n (and ∂L/∂c_n) arriving with its hidden units not adjacent in memory — a loss on
    ``h_n.transpose(1, 2)`` — must be read as such: the compiled step reads rows with unit stride."""
    torch.manual_seed(0)
    fused_layer = getattr(rnnkit, cell)(3, 4, engine="fused", dtype=DT, **options).eval()
    ref = getattr(rnnkit, cell)(3, 4, engine="reference", dtype=DT, **options).eval()
    ref.load_state_dict(fused_layer.state_dict())
    x = random(6, 2, 3, seed=1)
    weight = random(2 if options.get("bidirectional") else 1, 4, 2, seed=2)  # (L·D, H, B)
    grads = []
    for layer in (fused_layer, ref):
        xx = x.clone().requires_grad_()
        y, state = layer(xx)
        finals = state if cell == "LSTM" else (state,)
        loss = (y * y).sum() + sum((s.transpose(1, 2) * weight).sum() ** 2 for s in finals)
        grads.append(torch.autograd.grad(loss, [xx, *layer.parameters()]))
    for a, e in zip(*grads):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
def test_saturated_pre_activations_give_no_nan(cell):
    """Pre-activations far below −44 (float32's exp overflows at 88): the compiled sigmoid and tanh clamp their
    argument, as -ffast-math would otherwise turn 1/(1 + inf) into NaN; the results equal torch.nn's."""
    torch.manual_seed(0)
    ours = getattr(rnnkit, cell)(4, 8, engine="fused")
    theirs = getattr(torch.nn, cell)(4, 8)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, 3, 4) * 500
    x[:, 0] = -100.0
    y, _ = ours(x)
    y_ref, _ = theirs(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    g = torch.autograd.grad(y.sum(), list(ours.parameters()))
    assert all(torch.isfinite(t).all() for t in g)


def test_weight_gradients_come_back_contiguous_like_torch_nn():
    """A weight gradient computed the faster way round (``products.weight_grad``) is handed back in torch.nn's
    layout, so ``torch.autograd.grad(...)[k].view(-1)`` works as it does there."""
    layer = rnnkit.GRU(3, 8, engine="fused")
    y, _ = layer(torch.randn(5, 2, 3))
    for g in torch.autograd.grad(y.sum(), list(layer.parameters())):
        assert g.is_contiguous()
        g.view(-1)
