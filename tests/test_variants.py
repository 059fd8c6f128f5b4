"""Sequence regularisation and cell variants (issue 3): recurrent dropout, zoneout, weight-drop and
layer norm, on the engines, the layers and the cells.

- Engine: the fused engine's hand-written backward passes ``gradcheck`` for every option (masks given
  explicitly as a ``Noise``), and equals the reference engine given the same ``Noise`` — outputs,
  final states and every gradient — with and without lengths, forwards and in reverse.
- Layer: the masks are drawn in ``stack.py`` before any engine runs, so after the same
  ``torch.manual_seed`` the reference and fused engines must agree exactly, for every option and cell;
  ``auto`` picks fused for what torch's kernels cannot run, ``native`` refuses it (but runs weight-drop and locked
  masks between layers).
- Semantics: zoneout with keep masks of ones holds the initial state and with zeros is the plain cell;
  a layer's zoneout draws a fresh mask every step; eval mode is the expectation, deterministic and
  draws nothing from the RNG; a seeded run is reproducible.
- Cells: stepping LSTMCell / GRUCell / RNNCell with the variants equals the layer (in eval, and in
  training with the recurrent mask the cell draws); generation's ``StepKernel`` equals it or refuses.
- Bad input: each option's bad values give a clear error naming the module, the option and the range.
- ``benchmarks/bench_variants.py --quick`` runs (no timing assertions).

Dropout kinds between layers and the dropout modules are in ``test_seq_dropout.py``, initialisation
in ``test_init.py``.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from core_helpers import (CELLS, DT, MODE_IDS, MODES_PROJ, assert_all_close, covering, grads_of, loss_of, random,
                          states_list)

import rnnkit
from rnnkit.engine import LayerWeights, Noise, choose_engine, dispatch, fused, native, reference
from rnnkit.engine.step import StepKernel

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
ROOT = Path(__file__).resolve().parents[1]


# -- engine level: explicit masks ------------------------------------------------------------------
#: What the Noise carries for each engine option.
ENGINE_OPTIONS = ("recurrent", "zone_mask", "zone_float", "layer_norm", "combined")


def engine_supports(mode: str, option: str) -> bool:
    return option != "layer_norm" or mode in ("lstm", "gru")


def engine_leaves(mode: str, proj: int, layer_norm: bool, T: int, B: int, I: int, H: int, seed: int = 0) -> dict:
    """Named leaves of one layer run: x (T, B, I), h0 (B, P), c0 (B, H; LSTM), and ``LayerWeights``'
    fields. Layer-norm gains near 1 and biases near 0, but not exactly, so their gradients are generic."""
    G, P, s = GATES[mode] * H, proj or H, H**-0.5
    t = {"x": random(T, B, I, seed=seed), "h0": random(B, P, seed=seed + 1, scale=0.5)}
    if mode == "lstm":
        t["c0"] = random(B, H, seed=seed + 2, scale=0.5)
    t.update(w_ih=random(G, I, seed=seed + 3, scale=s), w_hh=random(G, P, seed=seed + 4, scale=s),
             b_ih=random(G, seed=seed + 5, scale=s), b_hh=random(G, seed=seed + 6, scale=s))
    if proj:
        t["w_hr"] = random(proj, H, seed=seed + 7, scale=s)
    if layer_norm:
        parts = [("ih", G), ("hh", G)] + ([("c", H)] if mode == "lstm" else [])
        for k, (part, size) in enumerate(parts):
            t[f"ln_{part}_w"] = 1 + random(size, seed=seed + 10 + k, scale=0.2)
            t[f"ln_{part}_b"] = random(size, seed=seed + 20 + k, scale=0.2)
    return t


def bernoulli(shape, p: float, seed: int) -> torch.Tensor:
    """0/1 draws, 1 with probability p, from a private generator."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT).lt(p).to(DT)


def engine_noise(option: str, mode: str, proj: int, T: int, B: int, H: int, seed: int = 100) -> Noise:
    """The masks for ``option``; the LSTM's cell-state keeps differ from its h keeps (as with zoneout_cell)."""
    P = proj or H
    recurrent = zone_h = zone_c = None
    if option in ("recurrent", "combined"):
        recurrent = bernoulli((B, P), 0.7, seed) / 0.7
    if option in ("zone_mask", "combined"):
        zone_h = bernoulli((T, B, P), 0.4, seed + 1)
        zone_c = bernoulli((T, B, H), 0.5, seed + 2) if mode == "lstm" else None
    if option == "zone_float":
        zone_h, zone_c = 0.3, (0.6 if mode == "lstm" else None)
    return Noise(recurrent, zone_h, zone_c)


def engine_call(run_layer, mode: str, names, noise: Noise, lengths, reverse: bool):
    """A function of the leaves (in ``names`` order) that runs one layer and returns (y, h_n[, c_n])."""
    lens = None if lengths is None else torch.tensor(lengths)

    def call(*leaves):
        t = dict(zip(names, leaves))
        state = (t["h0"], t["c0"]) if mode == "lstm" else t["h0"]
        w = LayerWeights(**{k: v for k, v in t.items() if k not in ("x", "h0", "c0")})
        y, final = run_layer(mode, t["x"], state, w, lens, reverse, noise=noise)
        return (y, *states_list(final))

    return call


GC_LENGTHS = {"none": None, "unsorted": [3, 1, 2]}
GC_CASES = [
    (mp, row["option"], row["lengths"], row["reverse"])
    for mp in MODES_PROJ
    for row in covering({"option": [o for o in ENGINE_OPTIONS if engine_supports(mp[0], o)],
                         "lengths": list(GC_LENGTHS), "reverse": [False, True]})
]


@pytest.mark.parametrize(
    "mode_proj, option, lengths, reverse", GC_CASES,
    ids=[f"{MODE_IDS[MODES_PROJ.index(mp)]}-{o}-{ln}-rev={r}" for mp, o, ln, r in GC_CASES],
)
def test_fused_gradcheck_every_option(mode_proj, option, lengths, reverse):
    """Every option, with and without lengths, forwards and reversed (a pairwise covering of the three,
    per cell), in gradcheck's fast mode: a random projection of the Jacobian against finite differences."""
    mode, proj = mode_proj
    T, B, I, H = 3, 3, 2, 3
    t = engine_leaves(mode, proj, option in ("layer_norm", "combined") and engine_supports(mode, "layer_norm"),
                      T, B, I, H, seed=11)
    noise = engine_noise(option, mode, proj, T, B, H)
    call = engine_call(fused.run_layer, mode, list(t), noise, GC_LENGTHS[lengths], reverse)
    assert torch.autograd.gradcheck(call, [v.requires_grad_() for v in t.values()], fast_mode=True)


@pytest.mark.parametrize("mode, proj", MODES_PROJ, ids=MODE_IDS)
def test_fused_gradcheck_all_options_full_jacobian(mode, proj):
    """Every option at once, variable lengths, reversed: the whole Jacobian, element by element."""
    T, B, I, H = 3, 3, 2, 2
    t = engine_leaves(mode, proj and 1, mode in ("lstm", "gru"), T, B, I, H, seed=12)
    noise = engine_noise("combined", mode, proj and 1, T, B, H)
    call = engine_call(fused.run_layer, mode, list(t), noise, [3, 1, 2], True)
    assert torch.autograd.gradcheck(call, [v.requires_grad_() for v in t.values()])


def run_both_engines(mode, proj, layer_norm, noise, lengths, reverse, T=5, B=4, I=3, H=4):
    """(outputs, gradients of every leaf) for the fused and the reference engine, same leaves and noise."""
    base = engine_leaves(mode, proj, layer_norm, T, B, I, H, seed=3)
    results = []
    for run_layer in (fused.run_layer, reference.run_layer):
        leaves = {k: v.clone().requires_grad_() for k, v in base.items()}
        outs = list(engine_call(run_layer, mode, list(leaves), noise, lengths, reverse)(*leaves.values()))
        results.append((outs, grads_of(loss_of(outs), list(leaves.values()))))
    return results, list(base)


ENGINE_LENGTHS = {"none": None, "unsorted": [5, 2, 4, 1], "short": [3, 1, 3, 2]}
PARITY_CASES = [
    (mp, o, ln, r)
    for mp, o, ln, r in itertools.product(MODES_PROJ, ENGINE_OPTIONS, ENGINE_LENGTHS, (False, True))
    if engine_supports(mp[0], o)
]


@pytest.mark.parametrize(
    "mode_proj, option, lengths, reverse", PARITY_CASES,
    ids=[f"{MODE_IDS[MODES_PROJ.index(mp)]}-{o}-{ln}-rev={r}" for mp, o, ln, r in PARITY_CASES],
)
def test_fused_equals_reference_same_noise(mode_proj, option, lengths, reverse):
    mode, proj = mode_proj
    ln = option in ("layer_norm", "combined") and engine_supports(mode, "layer_norm")
    noise = engine_noise(option, mode, proj, T=5, B=4, H=4)
    ((out_f, grad_f), (out_r, grad_r)), names = run_both_engines(mode, proj, ln, noise, ENGINE_LENGTHS[lengths],
                                                                 reverse)
    assert_all_close(out_f, out_r, ["y", "h_n", "c_n"][: len(out_r)])
    assert_all_close(grad_f, grad_r, [f"grad {n}" for n in names])


F32_CASES = [(mp, o) for mp in MODES_PROJ for o in ENGINE_OPTIONS if engine_supports(mp[0], o)]


@pytest.mark.parametrize("mode_proj, option", F32_CASES,
                         ids=[f"{MODE_IDS[MODES_PROJ.index(mp)]}-{o}" for mp, o in F32_CASES])
def test_fused_float32_equals_float64_reference(mode_proj, option):
    """The float32 path (tanh through sigmoids, in-place buffers, per-step views) agrees with the
    float64 reference engine to float32 precision, outputs and every gradient, variable lengths."""
    mode, proj = mode_proj
    ln = option in ("layer_norm", "combined") and engine_supports(mode, "layer_norm")
    T, B, I, H = 5, 4, 3, 4
    base = engine_leaves(mode, proj, ln, T, B, I, H, seed=5)
    noise = engine_noise(option, mode, proj, T, B, H)
    single = Noise(*(z.float() if isinstance(z, torch.Tensor) else z for z in noise))
    results = []
    for run_layer, dtype, nz in ((fused.run_layer, torch.float32, single), (reference.run_layer, DT, noise)):
        leaves = {k: v.to(dtype).requires_grad_() for k, v in base.items()}
        outs = list(engine_call(run_layer, mode, list(leaves), nz, [5, 2, 4, 1], False)(*leaves.values()))
        loss = loss_of([o.double() for o in outs])  # the same upstream weights for both dtypes
        results.append((outs, grads_of(loss, list(leaves.values()))))
    (out32, grad32), (out64, grad64) = results
    for a, e, name in zip(out32 + grad32, out64 + grad64, ["y", "h_n", "c_n"][: len(out64)] + list(base)):
        assert a.dtype == torch.float32, name
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("as_float", [False, True], ids=["mask", "float"])
@pytest.mark.parametrize("engine", [reference, fused], ids=["reference", "fused"])
@pytest.mark.parametrize("mode, proj", MODES_PROJ, ids=MODE_IDS)
def test_zoneout_keep_all_holds_the_initial_state(mode, proj, engine, as_float):
    """Keep masks of ones (or the float 1.0): every step keeps h_{t-1} (and C_{t-1}), so the outputs are
    h_0 up to each length, the final state is the initial state, and no weight gets a gradient."""
    T, B, I, H = 4, 3, 2, 3
    P, lengths = proj or H, [4, 1, 3]
    t = {k: v.requires_grad_() for k, v in engine_leaves(mode, proj, False, T, B, I, H).items()}
    ones_h, ones_c = (1.0, 1.0) if as_float else (torch.ones(T, B, P, dtype=DT), torch.ones(T, B, H, dtype=DT))
    noise = Noise(zone_h=ones_h, zone_c=ones_c if mode == "lstm" else None)
    y, *final = engine_call(engine.run_layer, mode, list(t), noise, lengths, False)(*t.values())
    for b, L in enumerate(lengths):
        torch.testing.assert_close(y[:L, b], t["h0"][b].expand(L, P))
        assert not y[L:, b].any()
    assert_all_close(final, [t[k] for k in ("h0", "c0") if k in t], ["h_n", "c_n"][: len(final)])
    grads = torch.autograd.grad(loss_of([y, *final]), [t["w_ih"], t["w_hh"]])
    assert_all_close(grads, [torch.zeros_like(g) for g in grads], ["w_ih", "w_hh"])


@pytest.mark.parametrize("engine", [reference, fused], ids=["reference", "fused"])
@pytest.mark.parametrize("mode, proj", MODES_PROJ, ids=MODE_IDS)
def test_zoneout_keep_none_is_the_plain_cell(mode, proj, engine):
    """Keep masks of zeros go down the zoneout code path and must give the plain layer, gradients too."""
    T, B, H = 5, 4, 4
    P = proj or H
    zeros = Noise(zone_h=torch.zeros(T, B, P, dtype=DT),
                  zone_c=torch.zeros(T, B, H, dtype=DT) if mode == "lstm" else None)
    base = engine_leaves(mode, proj, False, T, B, 3, H, seed=5)
    results = []
    for noise in (zeros, Noise()):
        leaves = {k: v.clone().requires_grad_() for k, v in base.items()}
        outs = list(engine_call(engine.run_layer, mode, list(leaves), noise, [5, 2, 4, 1], True)(*leaves.values()))
        results.append((outs, grads_of(loss_of(outs), list(leaves.values()))))
    (out_z, grad_z), (out_p, grad_p) = results
    assert_all_close(out_z, out_p, ["y", "h_n", "c_n"][: len(out_p)])
    assert_all_close(grad_z, grad_p, [f"grad {n}" for n in base])


# -- layer level: masks drawn from torch's RNG -----------------------------------------------------
T, B, I, H = 5, 3, 3, 4
LAYER_OPTIONS = {
    "dropout_locked": dict(num_layers=2, dropout=0.4, dropout_kind="locked"),
    "dropout_variational": dict(num_layers=2, dropout=0.4, dropout_kind="variational", recurrent_dropout=0.3),
    "recurrent_dropout": dict(recurrent_dropout=0.3),
    "weight_drop": dict(weight_drop=0.4),
    "zoneout": dict(zoneout=0.3),
    "zoneout_cell": dict(zoneout=0.2, zoneout_cell=0.5),
    "layer_norm": dict(layer_norm=True),
    "all": dict(num_layers=2, dropout=0.3, dropout_kind="variational", recurrent_dropout=0.2, weight_drop=0.3,
                zoneout=0.2, layer_norm=True),
}
RANDOM_OPTIONS = [o for o in LAYER_OPTIONS if o != "layer_norm"]


def layer_supports(cell_name: str, option: str) -> bool:
    opts = LAYER_OPTIONS[option]
    if "zoneout_cell" in opts and CELLS[cell_name].mode != "lstm":
        return False
    return not (opts.get("layer_norm") and CELLS[cell_name].mode not in ("lstm", "gru"))


def make_layer(cell_name: str, option: str, engine: str = "fused", seed: int = 0, dtype=DT, **extra):
    cell = CELLS[cell_name]
    torch.manual_seed(seed)
    return cell.kit(I, H, dtype=dtype, engine=engine, **cell.kwargs, **LAYER_OPTIONS[option], **extra)


def layer_run(m, x_base, seed: int, lengths=None):
    """Outputs and every gradient (input, each parameter) of one call after ``torch.manual_seed(seed)``."""
    x = x_base.clone().requires_grad_()
    torch.manual_seed(seed)
    y, state = m(x, lengths=lengths)
    outs = [y, *states_list(state)]
    return outs, grads_of(loss_of(outs), [x, *m.parameters()])


LAYER_CASES = [(c, o, bi) for c, o, bi in itertools.product(CELLS, LAYER_OPTIONS, (False, True))
               if layer_supports(c, o)]


@pytest.mark.parametrize("cell_name, option, bidirectional", LAYER_CASES,
                         ids=[f"{c}-{o}-{'bi+lengths' if bi else 'uni'}" for c, o, bi in LAYER_CASES])
def test_layer_fused_equals_reference_same_seed(cell_name, option, bidirectional):
    m = make_layer(cell_name, option, bidirectional=bidirectional).train()
    x, lengths = random(T, B, I, seed=1), ([5, 2, 4] if bidirectional else None)
    results = []
    with torch.random.fork_rng():
        for engine in ("fused", "reference"):
            m.engine = engine
            results.append(layer_run(m, x, seed=2024, lengths=lengths))
    (out_f, grad_f), (out_r, grad_r) = results
    assert_all_close(out_f, out_r, ["output", "h_n", "c_n"][: len(out_r)])
    assert_all_close(grad_f, grad_r, ["input"] + [n for n, _ in m.named_parameters()])


NEEDS_FUSED = [o for o in LAYER_OPTIONS if o not in ("weight_drop", "dropout_locked")]


@pytest.mark.parametrize("option", NEEDS_FUSED)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_auto_picks_fused_for_options_torch_lacks(monkeypatch, option, training):
    """A float32 LSTM in training would go to torch's oneDNN kernel; any of these options sends it to
    the fused engine (checked by choose_engine and by spying on what the layer really calls)."""
    m = make_layer("lstm", option, engine="auto", dtype=torch.float32).train(training)
    x = torch.randn(T, B, I)
    assert choose_engine("auto", "lstm", x, None, m.options, m.layer_norm) == "fused"
    calls = []
    real_native = native.run_stack
    monkeypatch.setattr(native, "run_stack", lambda *a, **k: calls.append("native") or real_native(*a, **k))
    monkeypatch.setitem(dispatch._LAYER_FNS, "fused",
                        lambda *a, **k: calls.append("fused") or fused.run_layer(*a, **k))
    m(x)
    assert set(calls) == {"fused"}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_auto_runs_locked_dropout_on_torchs_kernel_layer_by_layer(monkeypatch, training):
    """Locked masks between layers need no change inside a layer: a float32 LSTM keeps torch's kernel, run
    one layer at a time under the shared stacking code (``native-layers``), which really runs in training;
    in eval no mask is drawn and the whole stack is one call of torch's kernel."""
    m = make_layer("lstm", "dropout_locked", engine="auto", dtype=torch.float32).train(training)
    x = torch.randn(T, B, I)
    assert choose_engine("auto", "lstm", x, None, m.options, m.layer_norm) == "native-layers"
    calls, real = [], native.run_stack
    monkeypatch.setitem(dispatch._LAYER_FNS, "native-layers",
                        lambda *a, **k: calls.append("native-layers") or native.run_layer(*a, **k))
    monkeypatch.setattr(native, "run_stack", lambda *a, **k: calls.append("native") or real(*a, **k))
    m(x)
    assert calls and set(calls) == {"native-layers" if training else "native"}


def test_auto_keeps_torch_kernel_for_weight_drop():
    """Weight-drop changes only the weights, so a float32 LSTM in training stays on torch's kernel."""
    m = make_layer("lstm", "weight_drop", engine="auto", dtype=torch.float32)
    assert choose_engine("auto", "lstm", torch.zeros(T, B, I), None, m.options, m.layer_norm) == "native"


NATIVE_CASES = [(c, o) for c, o in itertools.product(["lstm", "gru", "rnn_tanh"], NEEDS_FUSED) if layer_supports(c, o)]


@pytest.mark.parametrize("cell_name, option", NATIVE_CASES, ids=[f"{c}-{o}" for c, o in NATIVE_CASES])
def test_native_refuses_options_it_cannot_run(cell_name, option, assert_error):
    m = make_layer(cell_name, option, engine="native")
    word = "recurrent_dropout" if option in ("dropout_variational", "all") else option  # (locked masks alone run)
    for mode in (m.train(), m.eval()):
        assert_error(ValueError, lambda: mode(random(T, B, I, seed=1)), "engine='native'", word, "engine='fused'")
    # ... also with weight-drop and dropout between layers, which run torch's kernel one layer at a time in
    # training: that path passed the options by (layer norm silently left out, zoneout named in internal words)
    cell = CELLS[cell_name]
    opts = {"num_layers": 2, "dropout": 0.2, **LAYER_OPTIONS[option], "weight_drop": 0.3}
    m = cell.kit(I, H, dtype=DT, engine="native", **cell.kwargs, **opts).train()
    assert_error(ValueError, lambda: m(random(T, B, I, seed=1)), "engine='native'", word, "engine='fused'")


def assert_native_equals_fused(m, x) -> None:
    """The layer's outputs and every gradient on torch's kernel equal the fused engine's after the same seed."""
    results = []
    for engine in ("native", "fused"):
        m.engine = engine
        results.append(layer_run(m, x, seed=7))
    (out_n, grad_n), (out_f, grad_f) = results
    assert_all_close(out_n, out_f, ["output", "h_n", "c_n"][: len(out_f)])
    assert_all_close(grad_n, grad_f, ["input"] + [n for n, _ in m.named_parameters()])


@pytest.mark.parametrize("kind", ["locked", "variational"])
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_native_runs_locked_masks_between_layers_like_fused(cell_name, kind, assert_error):
    """Locked masks between layers are what torch's kernel can run one layer at a time, as ``auto`` runs them:
    ``engine='native'`` takes them (it refused them) and draws the fused engine's masks for the same seed; where
    no mask is drawn (eval) the whole stack is torch.nn's. With lengths in training it refuses by name."""
    cell = CELLS[cell_name]
    torch.manual_seed(0)
    m = cell.kit(I, H, dtype=DT, num_layers=3, dropout=0.4, dropout_kind=kind, bidirectional=True,
                 **cell.kwargs).train()
    x = random(T, B, I, seed=2)
    assert_native_equals_fused(m, x)
    m.engine = "native"
    ref = cell.ref(I, H, dtype=DT, num_layers=3, dropout=0.4, bidirectional=True, **cell.kwargs).eval()
    ref.load_state_dict(m.state_dict())
    assert_all_close([m.eval()(x)[0]], [ref(x)[0]], ["output"])
    m.train()
    assert_error(ValueError, lambda: m(x, lengths=torch.tensor([T] * (B - 1) + [2])), "engine='native'",
                 f"dropout_kind={kind!r}", "lengths=", "engine='fused'")


@pytest.mark.parametrize("cell_name", list(CELLS))
def test_native_runs_weight_drop_like_fused(cell_name):
    """One layer (no between-layer dropout to draw in another order): the same seed drops the same
    weights on torch's kernel as on the fused engine."""
    m = make_layer(cell_name, "weight_drop", bidirectional=True).train()
    x = random(T, B, I, seed=2)
    assert_native_equals_fused(m, x)


# -- semantics: zoneout draws, eval mode, seeds ------------------------------------------------------
def copy_layer(cells: int, engine: str, p: float, **options):
    """A ReLU RNN whose candidate state is its input: W_ih = I, W_hh = 0, no bias, so h̃_t = x_t for x ≥ 0."""
    m = rnnkit.RNN(cells, cells, nonlinearity="relu", bias=False, dtype=DT, engine=engine, zoneout=p, **options)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.eye(cells, dtype=DT))
        m.weight_hh_l0.zero_()
    return m


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_zoneout_draws_a_fresh_mask_every_step(engine):
    """With h̃_t = x_t = t + 1, each unit of h_t is either t + 1 (updated) or h_{t-1} (kept): the kept
    fraction is p at every step, and the kept units change from step to step (unlike a locked mask)."""
    p, steps, batch, cells = 0.3, 6, 40, 25
    m = copy_layer(cells, engine, p).train()
    x = torch.arange(1, steps + 1, dtype=DT).view(steps, 1, 1).expand(steps, batch, cells)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        y, _ = m(x)
    h_prev = torch.cat([torch.zeros(1, batch, cells, dtype=DT), y[:-1]])
    updated = y == x
    assert (updated | (y == h_prev)).all()  # each unit is exactly one of the two
    kept = ~updated
    for t in range(1, steps):  # 1,000 units a step: σ of the fraction < 0.015
        assert abs(kept[t].double().mean().item() - p) < 0.06
        assert not torch.equal(kept[t], kept[t - 1])
    m.eval()
    y_eval, _ = m(x)
    expect, h = [], torch.zeros(batch, cells, dtype=DT)
    for t in range(steps):
        h = p * h + (1 - p) * x[t]  # the expectation of the 0/1 draw
        expect.append(h)
    torch.testing.assert_close(y_eval, torch.stack(expect))


@pytest.mark.parametrize("cell_name", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_zoneout_eval_is_the_expectation(cell_name):
    """In eval mode the engine sees the probabilities themselves as the keep 'masks'."""
    option = "zoneout_cell" if CELLS[cell_name].lstm else "zoneout"
    m = make_layer(cell_name, option, bidirectional=True).eval()
    x, h0 = random(T, B, I, seed=4), random(2, B, CELLS[cell_name].proj_size or H, seed=5)
    hx = (h0, random(2, B, H, seed=6)) if CELLS[cell_name].lstm else h0
    y, state = m(x, hx)
    noise = Noise(zone_h=m.options.zoneout, zone_c=m.options.zoneout_cell or None)
    ys, finals = [], []
    for d, w in enumerate(m.layer_weights()):
        s = (hx[0][d], hx[1][d]) if CELLS[cell_name].lstm else hx[d]
        y_d, s_d = reference.run_layer(CELLS[cell_name].mode, x, s, w, None, reverse=d == 1, noise=noise)
        ys.append(y_d)
        finals.append(states_list(s_d))
    torch.testing.assert_close(y, torch.cat(ys, dim=2))
    for k, s in enumerate(states_list(state)):
        torch.testing.assert_close(s, torch.stack([f[k] for f in finals]))


EVAL_CASES = [(c, o) for c, o in itertools.product(CELLS, LAYER_OPTIONS) if layer_supports(c, o)]


@pytest.mark.parametrize("cell_name, option", EVAL_CASES, ids=[f"{c}-{o}" for c, o in EVAL_CASES])
def test_eval_mode_is_deterministic_and_draws_nothing(cell_name, option):
    """Eval: two calls give the same result without touching the RNG; dropout, recurrent dropout and
    weight-drop are off, so the layer equals one built without them (same weights, zoneout kept)."""
    m = make_layer(cell_name, option, bidirectional=True).eval()
    x = random(T, B, I, seed=8)
    rng = torch.get_rng_state()
    y1, s1 = m(x)
    y2, s2 = m(x)
    assert torch.equal(torch.get_rng_state(), rng)
    out1, names = [y1, *states_list(s1)], ["output", "h_n", "c_n"][: 1 + len(states_list(s1))]
    assert_all_close(out1, [y2, *states_list(s2)], names, rtol=0, atol=0)
    opts = LAYER_OPTIONS[option]
    keep = {k: v for k, v in opts.items() if k in ("num_layers", "layer_norm", "zoneout", "zoneout_cell")}
    cell = CELLS[cell_name]
    plain = cell.kit(I, H, dtype=DT, engine="fused", bidirectional=True, **cell.kwargs, **keep).eval()
    plain.load_state_dict(m.state_dict())
    y3, s3 = plain(x)
    assert_all_close(out1, [y3, *states_list(s3)], names)


SEED_CASES = [(c, o) for c, o in itertools.product(["lstm", "gru"], RANDOM_OPTIONS) if layer_supports(c, o)]


@pytest.mark.parametrize("cell_name, option", SEED_CASES, ids=[f"{c}-{o}" for c, o in SEED_CASES])
def test_seeded_training_run_is_reproducible(cell_name, option):
    m = make_layer(cell_name, option).train()
    x = random(T, B, I, seed=9)
    with torch.random.fork_rng():
        out1, grad1 = layer_run(m, x, seed=11)
        out2, grad2 = layer_run(m, x, seed=11)
        out3, _ = layer_run(m, x, seed=12)
    names = ["output", "h_n", "c_n"][: len(out1)]
    assert_all_close(out1, out2, names, rtol=0, atol=0)
    assert_all_close(grad1, grad2, ["input"] + [n for n, _ in m.named_parameters()], rtol=0, atol=0)
    assert not torch.equal(out1[0], out3[0])


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "rnn_relu"])
def test_zoneout_zero_is_the_plain_layer(cell_name):
    """zoneout=0 (and zoneout_cell=0) in training: the plain layer's result, and nothing drawn."""
    cell = CELLS[cell_name]
    extra = {"zoneout_cell": 0.0} if cell.lstm else {}
    m = cell.kit(I, H, dtype=DT, engine="fused", zoneout=0.0, **cell.kwargs, **extra).train()
    plain = cell.kit(I, H, dtype=DT, engine="fused", **cell.kwargs).train()
    plain.load_state_dict(m.state_dict())
    x = random(T, B, I, seed=10)
    rng = torch.get_rng_state()
    y, state = m(x)
    assert torch.equal(torch.get_rng_state(), rng)
    y_plain, state_plain = plain(x)
    outs = [y, *states_list(state)]
    assert_all_close(outs, [y_plain, *states_list(state_plain)], ["output", "h_n", "c_n"][: len(outs)])


# -- cells: stepping equals the layer -------------------------------------------------------------------
CELL_VARIANTS = {
    "lstm": (rnnkit.LSTMCell, {}, [dict(layer_norm=True), dict(zoneout=0.3), dict(zoneout=0.2, zoneout_cell=0.6),
                                   dict(layer_norm=True, zoneout=0.3, recurrent_dropout=0.4)]),
    "gru": (rnnkit.GRUCell, {}, [dict(layer_norm=True), dict(zoneout=0.3), dict(layer_norm=True, zoneout=0.3)]),
    "rnn_tanh": (rnnkit.RNNCell, {"nonlinearity": "tanh"}, [dict(zoneout=0.3), dict(recurrent_dropout=0.4)]),
    "rnn_relu": (rnnkit.RNNCell, {"nonlinearity": "relu"}, [dict(zoneout=0.3)]),
}
CELL_CASES = [(name, opts) for name, (_, _, variants) in CELL_VARIANTS.items() for opts in variants]


def cell_from_layer(layer, cls, kwargs, options, direction: str):
    cell = cls(I, H, dtype=DT, **kwargs, **options)
    cell.load_state_dict({n: getattr(layer, n + direction) for n, _ in cell.named_parameters()})
    return cell


def step_cell(cell, x, state, reverse: bool, mask=None):
    """Run the cell over (T, B, I); returns (outputs (T, B, H), final state)."""
    lstm = isinstance(cell, rnnkit.LSTMCell)
    out = [None] * x.shape[0]
    for t in (range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])):
        state = cell(x[t], state, recurrent_mask=mask)
        out[t] = state[0] if lstm else state
    return torch.stack(out), state


@pytest.mark.parametrize("name, options", CELL_CASES, ids=[f"{n}-{'-'.join(o)}" for n, o in CELL_CASES])
def test_cell_loop_equals_layer_in_eval(name, options):
    """A bidirectional layer in eval mode, against its two directions stepped by cells holding its
    weights: outputs, final states, the input gradient and every parameter's gradient."""
    cls, kwargs, _ = CELL_VARIANTS[name]
    layer_cls = {rnnkit.LSTMCell: rnnkit.LSTM, rnnkit.GRUCell: rnnkit.GRU, rnnkit.RNNCell: rnnkit.RNN}[cls]
    torch.manual_seed(0)
    layer = layer_cls(I, H, dtype=DT, engine="fused", bidirectional=True, **kwargs, **options).eval()
    cells = [cell_from_layer(layer, cls, kwargs, options, sfx).eval() for sfx in ("_l0", "_l0_reverse")]
    lstm = cls is rnnkit.LSTMCell
    x_base, h0, c0 = random(T, B, I, seed=1), random(2, B, H, seed=2), random(2, B, H, seed=3)

    x = x_base.clone().requires_grad_()
    y, state = layer(x, (h0, c0) if lstm else h0)
    outs_layer = [y, *states_list(state)]
    grads_layer = grads_of(loss_of(outs_layer), [x, *layer.parameters()])

    x = x_base.clone().requires_grad_()
    ys, finals = [], []
    for d, cell in enumerate(cells):
        y_d, s_d = step_cell(cell, x, (h0[d], c0[d]) if lstm else h0[d], reverse=d == 1)
        ys.append(y_d)
        finals.append(states_list(s_d))
    outs_loop = [torch.cat(ys, dim=2)] + [torch.stack([f[k] for f in finals]) for k in range(len(finals[0]))]
    cell_params = [p for c in cells for p in c.parameters()]
    grads_loop = grads_of(loss_of(outs_loop), [x, *cell_params])
    assert_all_close(outs_loop, outs_layer, ["output", "h_n", "c_n"][: len(outs_layer)])
    # The layer's parameters are ordered direction by direction, like the cells' concatenated.
    assert_all_close(grads_loop, grads_layer, ["input"] + [n for n, _ in layer.named_parameters()])


@pytest.mark.parametrize("cls, kwargs", [(rnnkit.LSTMCell, {}), (rnnkit.GRUCell, {}), (rnnkit.RNNCell, {}),
                                         (rnnkit.LSTMCell, {"layer_norm": True})],
                         ids=["lstm", "gru", "rnn", "lstm_ln"])
def test_cell_with_drawn_recurrent_mask_equals_layer_in_training(cls, kwargs):
    """``cell.draw_recurrent_mask(B)`` draws what the layer draws first, so after the same seed the
    stepped cell and the one-layer stack use the same mask: equal outputs and gradients."""
    layer_cls = {rnnkit.LSTMCell: rnnkit.LSTM, rnnkit.GRUCell: rnnkit.GRU, rnnkit.RNNCell: rnnkit.RNN}[cls]
    layer = layer_cls(I, H, dtype=DT, engine="fused", recurrent_dropout=0.4, **kwargs).train()
    cell = cell_from_layer(layer, cls, {}, dict(recurrent_dropout=0.4, **kwargs), "_l0").train()
    x = random(T, B, I, seed=4)
    lstm = cls is rnnkit.LSTMCell
    with torch.random.fork_rng():
        out_layer, grad_layer = layer_run(layer, x, seed=21)
        torch.manual_seed(21)
        mask = cell.draw_recurrent_mask(B)
        xc = x.clone().requires_grad_()
        zeros = torch.zeros(B, H, dtype=DT)
        y, s = step_cell(cell, xc, (zeros, zeros) if lstm else zeros, reverse=False, mask=mask)
    assert mask is not None and set(mask.unique().tolist()) == {0.0, 1 / 0.6}
    outs = [y, *(st.unsqueeze(0) for st in states_list(s))]
    assert_all_close(outs, out_layer, ["output", "h_n", "c_n"][: len(outs)])
    grad_cell = grads_of(loss_of(outs), [xc, *cell.parameters()])
    assert_all_close(grad_cell, grad_layer, ["input"] + [n for n, _ in cell.named_parameters()])


@pytest.mark.parametrize("cls", [rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.RNNCell])
def test_cell_zoneout_in_training_keeps_or_updates_each_unit(cls):
    """Training: each unit of the new h is either the old h or the plain cell's new h, about p of them old."""
    torch.manual_seed(0)  # a statistical check: one fixed draw, whatever ran before
    p, batch = 0.3, 200
    cell = cls(I, H, dtype=DT, zoneout=p).train()
    plain = cls(I, H, dtype=DT)
    plain.load_state_dict(cell.state_dict())
    x = random(batch, I, seed=5)
    state = (random(batch, H, seed=6), random(batch, H, seed=7)) if cls is rnnkit.LSTMCell else random(batch, H, seed=6)
    new, ref = states_list(cell(x, state)), states_list(plain(x, state))
    for k, (n, r, old) in enumerate(zip(new, ref, states_list(state))):
        kept = n == old
        assert (kept | (n == r)).all(), f"state {k}"
        assert abs(kept.double().mean().item() - p) < 0.06  # 800 units: σ ≈ 0.016
    assert cell.draw_recurrent_mask(batch) is None  # no recurrent dropout asked for


STEP_CASES = [("lstm", "recurrent_dropout"), ("gru", "weight_drop"), ("lstm", "dropout_variational"),
              ("lstm", "layer_norm"), ("gru", "layer_norm"), ("lstm", "zoneout"), ("rnn_tanh", "zoneout")]


@pytest.mark.parametrize("cell_name, option", STEP_CASES)
def test_step_kernel_equals_layer_in_eval_or_refuses(cell_name, option):
    """Generation steps a layer with ``StepKernel``; in eval mode it must compute what the layer computes
    (dropout of every kind off, zoneout's expectation, layer norm) — or refuse the layer."""
    m = make_layer(cell_name, option).eval()
    try:
        kernel = StepKernel.for_layer(m)
    except ValueError as err:  # refusing is allowed, naming what it cannot step
        assert m.layer_norm and "layer_norm" in str(err), str(err)
        return
    x = random(T, B, I, seed=12)
    y, state = m(x)
    L, lstm = m.num_layers, CELLS[cell_name].lstm
    s = (torch.zeros(L, B, H, dtype=DT), torch.zeros(L, B, H, dtype=DT)) if lstm else torch.zeros(L, B, H, dtype=DT)
    ys = []
    with torch.no_grad():
        for t in range(T):
            y_t, s = kernel(x[t], s)
            ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys), y.detach())


# -- bad input ---------------------------------------------------------------------------------------
BAD_PROBABILITIES = [-0.1, 1.0, 1.5, True, "0.3", float("nan")]
PROB_OPTIONS = [("recurrent_dropout", rnnkit.LSTM), ("weight_drop", rnnkit.GRU), ("zoneout", rnnkit.RNN),
                ("zoneout_cell", rnnkit.LSTM), ("recurrent_dropout", rnnkit.GRUCell), ("zoneout", rnnkit.LSTMCell),
                ("zoneout_cell", rnnkit.LSTMCell)]


@pytest.mark.parametrize("bad", BAD_PROBABILITIES, ids=repr)
@pytest.mark.parametrize("option, cls", PROB_OPTIONS, ids=[f"{c.__name__}-{o}" for o, c in PROB_OPTIONS])
def test_probability_outside_unit_interval(option, cls, bad, assert_error):
    assert_error(ValueError, lambda: cls(3, 4, **{option: bad}), f"rnnkit.{cls.__name__}", option, "[0, 1)", repr(bad))


@pytest.mark.parametrize(
    "cls, options, exc, fragments",
    [
        (rnnkit.LSTM, dict(dropout_kind="gaussian"), ValueError,
         ["dropout_kind", "'gaussian'", "'naive'", "'locked'", "'variational'"]),
        (rnnkit.GRU, dict(dropout_kind="naive", recurrent_dropout=0.2), ValueError,
         ["recurrent_dropout", "'variational'", "'naive'"]),
        (rnnkit.GRU, dict(dropout_kind="locked", recurrent_dropout=0.2), ValueError, ["recurrent_dropout", "'locked'"]),
        (rnnkit.RNN, dict(layer_norm=True), ValueError, ["rnnkit.RNN", "layer_norm", "LSTM and GRU"]),
        (rnnkit.RNNCell, dict(layer_norm=True), ValueError, ["rnnkit.RNNCell", "layer_norm"]),
        (rnnkit.LSTM, dict(layer_norm="yes"), TypeError, ["layer_norm", "True or False", "'yes'"]),
        (rnnkit.GRU, dict(zoneout_cell=0.2), ValueError, ["rnnkit.GRU", "zoneout_cell", "LSTM"]),
        (rnnkit.RNN, dict(zoneout_cell=0.2), ValueError, ["rnnkit.RNN", "zoneout_cell"]),
        (rnnkit.GRUCell, dict(zoneout_cell=0.2), ValueError, ["rnnkit.GRUCell", "zoneout_cell"]),
        (rnnkit.GRU, dict(forget_bias=1.0), ValueError, ["rnnkit.GRU", "forget_bias", "LSTM"]),
        (rnnkit.GRUCell, dict(forget_bias=1.0), ValueError, ["rnnkit.GRUCell", "forget_bias"]),
        (rnnkit.LSTMCell, dict(weight_drop=0.2), TypeError, ["rnnkit.LSTMCell", "weight_drop", "layer rnnkit.LSTM"]),
        (rnnkit.GRUCell, dict(dropout_kind="locked"), TypeError, ["rnnkit.GRUCell", "dropout_kind", "rnnkit.GRU "]),
        (rnnkit.RNNCell, dict(num_layers=2, engine="fused"), TypeError, ["rnnkit.RNNCell", "'engine'", "'num_layers'"]),
        (rnnkit.GRUCell, dict(hiden_size=4), TypeError, ["rnnkit.GRUCell", "'hiden_size'", "hidden_size", "zoneout"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_unsupported_or_unknown_option(cls, options, exc, fragments, assert_error):
    assert_error(exc, lambda: cls(3, 4, **options), *fragments)


@pytest.mark.parametrize("cls", [rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.RNNCell])
def test_cell_recurrent_dropout_needs_its_mask(cls, assert_error):
    cell = cls(3, 4, dtype=DT, recurrent_dropout=0.25).train()
    x = random(2, 3, seed=1)
    assert_error(ValueError, lambda: cell(x), f"rnnkit.{cls.__name__}", "recurrent_dropout=0.25",
                 "draw_recurrent_mask")
    assert_error(ValueError, lambda: cell(x, recurrent_mask=torch.ones(5, 4, dtype=DT)), "recurrent_mask", "(2, 4)",
                 "(5, 4)")
    cell(x, recurrent_mask=cell.draw_recurrent_mask(2))
    cell.eval()
    assert cell.draw_recurrent_mask(2) is None
    cell(x)  # eval: no mask, no dropout



@pytest.mark.parametrize("cls", [rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.RNNCell])
def test_an_unbatched_step_takes_its_mask_unbatched_too(cls):
    """An unbatched cell takes an (H,) state; its (H,) mask was refused as not (1, H)."""
    cell = cls(3, 4, dtype=DT, recurrent_dropout=0.5).train()
    x = random(1, 3, seed=1)
    mask = cell.draw_recurrent_mask(1)
    torch.testing.assert_close(cell(x[0], recurrent_mask=mask[0]), cell(x[0], recurrent_mask=mask))
    out = cell(x, recurrent_mask=mask)
    torch.testing.assert_close(cell(x[0], recurrent_mask=mask[0]), tuple(o[0] for o in out) if isinstance(out, tuple)
                               else out[0])


# -- benchmark smoke test ---------------------------------------------------------------------------
def test_bench_variants_quick_runs(tmp_path):
    """``benchmarks/bench_variants.py --quick`` runs end to end on a tiny config and prints one table row
    per cell and option with both ratios, and a summary line per target. No timing assertions."""
    bench = ROOT / "benchmarks" / "bench_variants.py"
    cmd = [sys.executable, str(bench), "--quick", "--configs", "tiny", "--repeats", "3", "--min-time", "0.002",
           "--threads", "1", "--json", str(tmp_path / "rows.json")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| tiny")]
    assert len(rows) == 2 * 6, proc.stdout  # LSTM and GRU × six options
    for row in rows:
        assert row.count("×") >= 2, row
    assert any(line.startswith("- options vs plain fused") for line in lines), proc.stdout
    assert any(line.startswith("- rnnkit (engine='auto') vs Python cell loop") for line in lines), proc.stdout
    assert "MISMATCH" not in proc.stdout  # the deterministic loops computed what rnnkit computes
    data = json.loads((tmp_path / "rows.json").read_text())
    assert len(data["rows"]) == 12 and all(r["vs_plain"] > 0 and r["vs_loop"] > 0 for r in data["rows"])


@pytest.mark.parametrize("built", [
    "GRU(4, 6, weight_drop=0.2, zoneout=0.1, layer_norm=True, engine='fused')",
    "LSTM(4, 6, num_layers=2, dropout=0.3, recurrent_dropout=0.25, zoneout=0.1, zoneout_cell=0.05, "
    "init='orthogonal', forget_bias=1.0)",
    "LSTM(4, 6, num_layers=2, dropout=0.3, dropout_kind='locked')",
    "RNN(4, 6, nonlinearity='relu', init='identity')",
    "RNNCell(4, 6, nonlinearity='relu', zoneout=0.1, init='identity')",
    "LSTMCell(4, 6, recurrent_dropout=0.1, layer_norm=True)",
    "GRU(4, 6)",
])
def test_repr_shows_every_option_and_rebuilds_the_module(built):
    m = eval("rnnkit." + built)
    assert repr(m) == built
    again = eval("rnnkit." + repr(m))
    assert again.options == m.options and repr(again) == built


@pytest.mark.parametrize("bidirectional", [False, True])
def test_weight_drop_with_dropout_between_layers_gives_every_engine_the_same_masks(bidirectional):
    """auto runs torch's kernel for a float32 LSTM; with weight-drop and dropout between layers it must
    still draw the masks in the stacking code's order (each layer's W_hh mask, then the mask after it)."""
    torch.manual_seed(1)
    m = rnnkit.LSTM(5, 6, num_layers=3, dropout=0.4, weight_drop=0.5, bidirectional=bidirectional)
    x = torch.randn(8, 4, 5)
    out = {}
    for engine in ("reference", "auto", "native"):
        m.engine = engine
        torch.manual_seed(7)
        out[engine] = m(x)[0]
    torch.testing.assert_close(out["auto"], out["reference"])
    torch.testing.assert_close(out["native"], out["reference"])


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
def test_weight_drop_is_dropconnect_on_w_hh_once_per_forward(name, engine):
    """Against its definition, not against another engine: the output equals torch.nn's layer run with
    W_hh replaced by F.dropout(W_hh, p) — the same mask at every step, kept weights scaled by 1/(1 − p),
    W_ih and the biases untouched — drawn from the same seed (the layer's only random draw here)."""
    p = 0.4
    torch.manual_seed(0)
    kit = getattr(rnnkit, name)(3, 5, dtype=DT, weight_drop=p, engine=engine).train()
    ref = getattr(torch.nn, name)(3, 5, dtype=DT)
    x = torch.randn(7, 2, 3, dtype=DT)
    torch.manual_seed(11)
    y, _ = kit(x)
    torch.manual_seed(11)
    dropped = torch.nn.functional.dropout(kit.weight_hh_l0.detach(), p, training=True)
    state = {k: v.detach() for k, v in kit.state_dict().items()}
    state["weight_hh_l0"] = dropped
    ref.load_state_dict(state)
    torch.testing.assert_close(y, ref(x)[0])
    kept = dropped != 0
    assert 0.2 < 1 - kept.double().mean().item() < 0.6  # about p of W_hh dropped
    torch.testing.assert_close(dropped[kept], kit.weight_hh_l0.detach()[kept] / (1 - p))
    ref.load_state_dict(kit.state_dict())  # eval: no drop at all
    torch.testing.assert_close(kit.eval()(x)[0], ref(x)[0])
