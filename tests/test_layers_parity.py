"""rnnkit.{RNN, LSTM, GRU} equal torch.nn's, in float64: outputs, final states, the gradient of the
input and initial states, and every parameter's gradient — for every engine.

The option matrix (cell × num_layers × bidirectional × batch_first × bias × input format × initial
state × engine) has 3,840 points. Every engine meets every cell kind (LSTM with and without a
projection counted as two) in every input format; the remaining five axes are swept by a 3-wise
covering array (``conftest.covering``), so every value of every axis — and every combination of
values of any three of them — runs with every engine, cell and format, in about a quarter of the
full product.
"""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import rnnkit
import torch
from core_helpers import (
    CELLS, DT, ENGINES, INPUT_FORMATS, PackedSequence, assert_all_close, covering, grads_of, loss_of, make_pair,
    pack_padded_sequence, pad_packed_sequence, random, states_list,
)
from torch.nn.utils.rnn import pack_sequence

T, B, I, H = 6, 4, 3, 5  # small and all different, so a swapped axis cannot go unnoticed
LENGTHS = [4, 1, 5, 3]  # unsorted, one sequence of a single step, and the longest shorter than T

OPTION_AXES = {
    "num_layers": (1, 2, 3),
    "bidirectional": (False, True),
    "batch_first": (False, True),
    "bias": (False, True),
    "initial_state": (False, True),
}
STRENGTH = 3
ROWS = covering(OPTION_AXES, STRENGTH)
CASES = [
    pytest.param(engine, cell, fmt, row, id=f"{engine}-{cell}-{fmt}-" + "-".join(f"{k}={v}" for k, v in row.items()))
    for engine, cell, fmt, row in itertools.product(ENGINES, CELLS, INPUT_FORMATS, ROWS)
]


def base_tensors(cell, fmt: str, num_layers: int, bidirectional: bool, batch_first: bool, seed: int):
    """The input (padded; batch-first when asked; 2-D when unbatched) and h_0 (and c_0)."""
    LD = num_layers * (2 if bidirectional else 1)
    batch = () if fmt == "unbatched" else (B,)
    if fmt == "unbatched":
        x = random(T, I, seed=seed)
    else:
        x = random(B, T, I, seed=seed) if batch_first else random(T, B, I, seed=seed)
    h0 = random(LD, *batch, cell.proj_size or H, seed=seed + 1)
    if cell.lstm:
        return [x, h0, random(LD, *batch, H, seed=seed + 2)]
    return [x, h0]


def call(module, kit: bool, fmt: str, leaves, initial_state: bool, batch_first: bool):
    """Forward through ``module``; returns (outputs, packed metadata or None).

    ``lengths`` format: rnnkit gets the padded batch and ``lengths=``; torch.nn, which has no such
    argument, gets the same batch packed, and its output padded back to T steps.
    """
    x = leaves[0]
    kwargs = {}
    inp = x
    if fmt == "packed" or (fmt == "lengths" and not kit):
        inp = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    elif fmt == "lengths":
        kwargs["lengths"] = torch.tensor(LENGTHS)
    hx = None
    if initial_state:
        hx = tuple(leaves[1:]) if len(leaves) == 3 else leaves[1]
    out, state = module(inp, hx, **kwargs)
    meta = None
    if isinstance(out, PackedSequence):
        if fmt == "lengths":
            out = pad_packed_sequence(out, batch_first=batch_first, total_length=T)[0]
        else:
            meta = (out.batch_sizes, out.sorted_indices, out.unsorted_indices)
            out = out.data
    return [out, *states_list(state)], meta


def run(module, kit: bool, fmt: str, base, initial_state: bool, batch_first: bool):
    """Forward and backward; returns (outputs, gradients of input, states and parameters, metadata)."""
    leaves = [t.clone().requires_grad_() for t in base]
    outputs, meta = call(module, kit, fmt, leaves, initial_state, batch_first)
    wrt = (leaves if initial_state else leaves[:1]) + list(module.parameters())
    return outputs, grads_of(loss_of(outputs), wrt), meta


@pytest.mark.parametrize("engine, cell_name, fmt, row", CASES)
def test_layer_matches_torch(engine, cell_name, fmt, row):
    cell = CELLS[cell_name]
    opts = {k: row[k] for k in ("num_layers", "bidirectional", "batch_first", "bias")}
    kit, ref = make_pair(cell, I, H, engine=engine, **opts)
    base = base_tensors(cell, fmt, row["num_layers"], row["bidirectional"], row["batch_first"], seed=len(CASES))
    args = (fmt, base, row["initial_state"], row["batch_first"])
    out_kit, grad_kit, meta_kit = run(kit, True, *args)
    out_ref, grad_ref, meta_ref = run(ref, False, *args)

    assert_all_close(out_kit, out_ref, ["output", "h_n", "c_n"][: len(out_ref)])
    names = ["input", "h_0", "c_0"][: len(base)] if row["initial_state"] else ["input"]
    assert_all_close(grad_kit, grad_ref, names + [f"grad {n}" for n, _ in ref.named_parameters()])
    if fmt == "packed":
        assert_all_close(meta_kit, meta_ref, ["batch_sizes", "sorted_indices", "unsorted_indices"])


def test_covering_covers():
    """The covering really covers: every combination of values of any STRENGTH option axes is in a row."""
    for sub in itertools.combinations(OPTION_AXES, STRENGTH):
        for vals in itertools.product(*(OPTION_AXES[a] for a in sub)):
            assert any(all(r[a] == v for a, v in zip(sub, vals)) for r in ROWS), (sub, vals)


@pytest.mark.parametrize("cell_name", CELLS)
@pytest.mark.parametrize("num_layers, bidirectional, bias", list(itertools.product((1, 2), *[(False, True)] * 2)))
def test_state_dict_both_ways(cell_name, num_layers, bidirectional, bias):
    """Parameter names, order and shapes equal torch's; weights load rnnkit → torch and torch → rnnkit."""
    cell = CELLS[cell_name]
    opts = {"num_layers": num_layers, "bidirectional": bidirectional, "bias": bias}
    kit, ref = make_pair(cell, I, H, **opts)
    assert [(n, p.shape) for n, p in kit.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    assert list(kit.state_dict()) == list(ref.state_dict())
    assert [[p.shape for p in ps] for ps in kit.all_weights] == [[p.shape for p in ps] for ps in ref.all_weights]
    assert kit._flat_weights_names == ref._flat_weights_names  # (init helpers zip them with _flat_weights)
    assert [p.shape for p in kit._flat_weights] == [p.shape for p in ref._flat_weights]

    # torch → rnnkit: a freshly initialised rnnkit layer takes torch's weights exactly.
    fresh_kit = cell.kit(I, H, dtype=DT, **cell.kwargs, **opts)
    fresh_kit.load_state_dict(ref.state_dict(), strict=True)
    assert_all_close(list(fresh_kit.state_dict().values()), list(ref.state_dict().values()), list(ref.state_dict()))
    # rnnkit → torch.
    fresh_ref = cell.ref(I, H, dtype=DT, **cell.kwargs, **opts)
    with torch.no_grad():
        for p in kit.parameters():
            p.mul_(-0.5)  # make the source differ from anything torch's init could give
    fresh_ref.load_state_dict(kit.state_dict(), strict=True)
    assert_all_close(list(fresh_ref.state_dict().values()), list(kit.state_dict().values()), list(kit.state_dict()))


@pytest.mark.parametrize("cell_name", CELLS)
def test_public_attributes_match_torch(cell_name):
    """What code written for torch.nn reads off a layer holds torch's values, ``mode`` in torch's spelling."""
    cell = CELLS[cell_name]
    opts = {"num_layers": 2, "bidirectional": True, "bias": False, "batch_first": True, "dropout": 0.25}
    kit, ref = make_pair(cell, I, H, **opts)
    names = ["mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
             "proj_size"] + (["nonlinearity"] if hasattr(ref, "nonlinearity") else [])
    assert {n: getattr(kit, n) for n in names} == {n: getattr(ref, n) for n in names}
    assert kit.cell == ref.mode.lower()  # rnnkit's own name, as the models' cell= argument


@pytest.mark.parametrize("cell_name", CELLS)
def test_torch_helpers_answer_as_torch(cell_name):
    """``_all_weights`` and the checking helpers of torch.nn.RNNBase (and LSTM) that code wrapping or
    subclassing torch's layers calls: the same answers, and torch's RuntimeError for a wrong shape."""
    cell = CELLS[cell_name]
    kit, ref = make_pair(cell, I, H, num_layers=2, bidirectional=True)
    assert kit._all_weights == ref._all_weights
    x = random(T, B, I, seed=1)
    packed = pack_sequence([random(n, I, seed=n) for n in (5, 3, 2)])
    for inp, sizes in ((x, None), (packed.data, packed.batch_sizes)):
        assert kit.get_expected_hidden_size(inp, sizes) == ref.get_expected_hidden_size(inp, sizes)
        kit.check_input(inp, sizes)
    good = [random(*ref.get_expected_hidden_size(x, None), seed=2)]
    if cell_name.startswith("lstm"):
        assert kit.get_expected_cell_size(x, None) == ref.get_expected_cell_size(x, None)
        good.append(random(*ref.get_expected_cell_size(x, None), seed=3))
    hidden = tuple(good) if len(good) == 2 else good[0]
    kit.check_forward_args(x, hidden, None)
    bad = tuple(s[:, :1] for s in good) if len(good) == 2 else good[0][:, :1]
    for m in (kit, ref):
        with pytest.raises(RuntimeError, match="Expected hidden"):
            m.check_forward_args(x, bad, None)
        with pytest.raises(RuntimeError, match="input must have 3 dimensions"):
            m.check_input(x[0], None)
    order = torch.tensor([2, 0, 3, 1])
    as_list = lambda h: list(h) if isinstance(h, tuple) else [h]  # noqa: E731
    assert_all_close(as_list(kit.permute_hidden(hidden, order)), as_list(ref.permute_hidden(hidden, order)),
                     ["h", "c"][: len(good)])


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_whole_module_saved_and_loaded_with_weights_only(cls, tmp_path):
    """``torch.save(module)`` then ``torch.load(weights_only=True)`` with only the module's class allowed, as
    for torch.nn's layers; options and weights come back."""
    kit_cls = getattr(rnnkit, cls)
    m = kit_cls(3, 5, zoneout=0.25) if cls.endswith("Cell") else kit_cls(3, 5, num_layers=2, zoneout=0.25,
                                                                          dropout=0.5, dropout_kind="locked")
    torch.save(m, tmp_path / "m.pt")
    with torch.serialization.safe_globals([kit_cls]):
        back = torch.load(tmp_path / "m.pt", weights_only=True)
    assert type(back.options) is type(m.options) and back.options == m.options
    assert repr(back) == repr(m)
    assert_all_close(list(back.state_dict().values()), list(m.state_dict().values()), list(m.state_dict()))
    assert copy.deepcopy(m).options == m.options
    m.compile()  # (in place: torch leaves the compiled call out of the pickle, and so do we)
    torch.save(m, tmp_path / "compiled.pt")


def test_whole_module_with_numpy_options_loads_with_weights_only(tmp_path):
    """NumPy scalars given as options are kept as Python numbers: nothing NumPy in the pickle."""
    m = rnnkit.LSTM(3, 5, forget_bias=np.float32(1.0), zoneout=np.float64(0.1))
    assert type(m.forget_bias) is float and repr(m).endswith("zoneout=0.1, forget_bias=1.0)")
    torch.save(m, tmp_path / "m.pt")
    with torch.serialization.safe_globals([rnnkit.LSTM]):
        assert torch.load(tmp_path / "m.pt", weights_only=True).forget_bias == 1.0
    # and flags and names: NumPy's bool and str_ (layer_norm, init, dropout_kind)
    m = rnnkit.LSTM(3, 5, num_layers=2, dropout=0.2, layer_norm=np.True_, init=np.str_("orthogonal"),
                    dropout_kind=np.str_("locked"))
    assert type(m.layer_norm) is bool and type(m.init) is str and type(m.options.dropout_kind) is str
    assert rnnkit.GRU(3, 5, layer_norm=1.0).layer_norm is True  # (numbers equal to 1 or 0, as before)
    assert rnnkit.GRU(3, 5, layer_norm=np.float64(0)).layer_norm is False
    assert "np." not in repr(m)
    torch.save(m, tmp_path / "m2.pt")
    with torch.serialization.safe_globals([rnnkit.LSTM]):
        assert torch.load(tmp_path / "m2.pt", weights_only=True).init == "orthogonal"
    assert rnnkit.LSTMCell(3, 5, forget_bias=np.int64(2)).forget_bias == 2.0


def test_sizes_and_rates_of_numpy_types_are_accepted():
    """Integers and probabilities read by NumPy or pandas (np.int64, np.float32), as torch.nn takes them."""
    m = rnnkit.LSTM(np.int64(3), np.int32(6), num_layers=np.int64(2), proj_size=np.int64(2),
                    dropout=np.float32(0.25), zoneout=np.float64(0.1))
    assert (m.input_size, m.hidden_size, m.num_layers, m.proj_size) == (3, 6, 2, 2)
    assert all(type(v) is int for v in (m.input_size, m.hidden_size, m.num_layers, m.proj_size))
    assert m.dropout == float(np.float32(0.25)) and m.options.zoneout == 0.1
    assert rnnkit.GRUCell(np.int64(3), np.int64(4)).hidden_size == 4
    with pytest.raises(TypeError, match="proj_size must be an int, got float"):
        rnnkit.LSTM(3, 6, proj_size=1.5)
    with pytest.raises(ValueError, match="proj_size must be an integer >= 0, got -1"):
        rnnkit.LSTM(3, 6, proj_size=-1)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell_name", CELLS)
def test_float32_matches_torch(engine, cell_name):
    """float32 is where ``auto`` picks the native engine for LSTM; parity holds to float32 rounding."""
    cell = CELLS[cell_name]
    kit, ref = make_pair(cell, I, H, engine=engine, dtype=torch.float32, num_layers=2, bidirectional=True)
    x = random(T, B, I, seed=7, dtype=torch.float32)
    (y_kit, s_kit), (y_ref, s_ref) = kit(x), ref(x)
    names = ["output", "h_n", "c_n"][: 1 + len(states_list(s_ref))]
    assert_all_close([y_kit, *states_list(s_kit)], [y_ref, *states_list(s_ref)], names, rtol=1e-4, atol=1e-5)


PACKINGS = {
    "enforce_sorted": lambda x: pack_padded_sequence(x, [T, 4, 4, 2], enforce_sorted=True),  # no permutation
    "all_full": lambda x: pack_padded_sequence(x, [T] * B, enforce_sorted=False),
    "single": lambda x: pack_padded_sequence(x[:, 1:2], [3]),
    "pack_sequence": lambda x: pack_sequence([x[:2, 0], x[:, 1], x[:1, 2], x[:5, 3]], enforce_sorted=False),
}


@pytest.mark.parametrize("packing", PACKINGS)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell_name", CELLS)
def test_packed_variants_match_torch(cell_name, engine, packing):
    """PackedSequences made other ways than the sweep's: the output keeps the input's packing."""
    kit, ref = make_pair(CELLS[cell_name], I, H, engine=engine, num_layers=2, bidirectional=True)
    base = random(T, B, I, seed=11)
    results = []
    for m in (kit, ref):
        x = base.clone().requires_grad_()
        inp = PACKINGS[packing](x)
        out, state = m(inp)
        assert torch.equal(out.batch_sizes, inp.batch_sizes)
        for mine, theirs in ((out.sorted_indices, inp.sorted_indices), (out.unsorted_indices, inp.unsorted_indices)):
            assert (mine is None and theirs is None) or torch.equal(mine, theirs)
        outs = [out.data, *states_list(state)]
        results.append((outs, grads_of(loss_of(outs), [x] + list(m.parameters()))))
    (out_kit, grad_kit), (out_ref, grad_ref) = results
    assert_all_close(out_kit, out_ref, ["output", "h_n", "c_n"][: len(out_ref)])
    assert_all_close(grad_kit, grad_ref, ["input"] + [f"grad {n}" for n, _ in ref.named_parameters()])


@pytest.mark.parametrize("fmt", ["padded", "lengths"])
@pytest.mark.parametrize("cell_name", CELLS)
def test_auto_inference_matches_torch(cell_name, fmt):
    """Under ``torch.no_grad()`` ``auto`` takes another route (torch's loop unless there are lengths)."""
    cell = CELLS[cell_name]
    kit, ref = make_pair(cell, I, H, num_layers=2, bidirectional=True)
    base = base_tensors(cell, fmt, 2, True, False, seed=5)
    with torch.no_grad():
        outs = [call(m, k, fmt, base, True, False)[0] for m, k in ((kit, True), (ref, False))]
    assert_all_close(outs[0], outs[1], ["output", "h_n", "c_n"][: len(outs[1])])
