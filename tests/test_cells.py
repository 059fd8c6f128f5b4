"""The cells: rnnkit.{RNNCell, LSTMCell, GRUCell} equal torch.nn's (outputs and every gradient,
batched and unbatched), the step functions pass gradcheck, and a step loop over a cell with a layer's
weights equals the layer."""
from __future__ import annotations

import itertools

import pytest
import torch
from core_helpers import CELLS, DT, ENGINES, assert_all_close, grads_of, loss_of, random, states_list
from torch import nn

import rnnkit
from rnnkit.cells import gru_cell, lstm_cell, rnn_cell

B, I, H = 3, 4, 5

#: name → (rnnkit cell, torch cell, extra kwargs, number of states)
CELL_PAIRS = {
    "rnn_tanh": (rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}, 1),
    "rnn_relu": (rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}, 1),
    "lstm": (rnnkit.LSTMCell, nn.LSTMCell, {}, 2),
    "gru": (rnnkit.GRUCell, nn.GRUCell, {}, 1),
}


@pytest.mark.parametrize("name, batched, given, bias", list(itertools.product(CELL_PAIRS, *[(False, True)] * 3)))
def test_cell_matches_torch(name, batched, given, bias):
    kit_cls, ref_cls, kwargs, n_states = CELL_PAIRS[name]
    ref = ref_cls(I, H, bias=bias, dtype=DT, **kwargs)
    kit = kit_cls(I, H, bias=bias, dtype=DT, **kwargs)
    assert list(kit.state_dict()) == list(ref.state_dict())
    kit.load_state_dict(ref.state_dict())
    batch = (B,) if batched else ()
    base = [random(*batch, I, seed=1)] + [random(*batch, H, seed=2 + k) for k in range(n_states)]
    results = []
    for m in (kit, ref):
        leaves = [t.clone().requires_grad_() for t in base]
        hx = None
        if given:
            hx = tuple(leaves[1:]) if n_states == 2 else leaves[1]
        outs = states_list(m(leaves[0], hx))
        wrt = (leaves if given else leaves[:1]) + list(m.parameters())
        results.append((outs, grads_of(loss_of(outs), wrt)))
    (out_kit, grad_kit), (out_ref, grad_ref) = results
    assert out_kit[0].shape == (*batch, H)
    assert_all_close(out_kit, out_ref, ["h", "c"][:n_states])
    names = ["input", "h", "c"][: 1 + n_states] if given else ["input"]
    assert_all_close(grad_kit, grad_ref, names + [n for n, _ in ref.named_parameters()])


@pytest.mark.parametrize("kind", ["namedtuple", "list"])
def test_lstm_cell_takes_its_state_as_any_pair(kind):
    """torch.nn.LSTMCell takes (h, c) as any 2-sequence — a namedtuple, as in torch's own custom-LSTM examples,
    or a list — and so does rnnkit's (a namedtuple state was rebuilt from a generator: a TypeError)."""
    import collections
    ref = nn.LSTMCell(I, H, dtype=DT)
    kit = rnnkit.LSTMCell(I, H, dtype=DT)
    kit.load_state_dict(ref.state_dict())
    h, c = random(B, H, seed=2), random(B, H, seed=3)
    hx = collections.namedtuple("LSTMState", "hx cx")(h, c) if kind == "namedtuple" else [h, c]
    x = random(B, I, seed=1)
    assert_all_close(list(kit(x, hx)), list(ref(x, hx)), ["h", "c"])


def cell_fn(name: str, proj: bool):
    """The step function of ``rnnkit.cells`` as a function of tensors only, for gradcheck."""
    if name == "lstm":
        return lambda x, h, c, *w: lstm_cell(x, (h, c), *w)
    if name == "gru":
        return gru_cell
    return lambda *ts: rnn_cell(*ts, nonlinearity=name[4:])


@pytest.mark.parametrize("name, proj", [("rnn_tanh", 0), ("rnn_relu", 0), ("gru", 0), ("lstm", 0), ("lstm", 2)])
def test_cell_function_gradcheck(name, proj):
    G = {"lstm": 4, "gru": 3}.get(name, 1) * H
    P = proj or H
    ts = [random(B, I, seed=1), random(B, P, seed=2)]
    if name == "lstm":
        ts.append(random(B, H, seed=3))
    ts += [random(G, I, seed=4, scale=0.4), random(G, P, seed=5, scale=0.4), random(G, seed=6), random(G, seed=7)]
    if proj:
        ts.append(random(P, H, seed=8, scale=0.4))
    assert torch.autograd.gradcheck(cell_fn(name, proj), [t.requires_grad_() for t in ts])


LOOP_CELLS = {"rnn_tanh": rnnkit.RNNCell, "rnn_relu": rnnkit.RNNCell, "lstm": rnnkit.LSTMCell, "gru": rnnkit.GRUCell}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", LOOP_CELLS)
def test_step_loop_equals_layer(name, engine):
    """Stepping a cell that holds a bidirectional layer's weights — forwards with ``_l0``, backwards
    in time with ``_l0_reverse`` — gives the layer's output, final states and input gradient."""
    layer_cell = CELLS[name]
    layer = layer_cell.kit(I, H, bidirectional=True, dtype=DT, engine=engine, **layer_cell.kwargs)
    T = 6
    x_base = random(T, B, I, seed=9)
    h0 = random(2, B, H, seed=10)
    c0 = random(2, B, H, seed=11)
    hx = (h0, c0) if layer_cell.lstm else h0

    x = x_base.clone().requires_grad_()
    y, state = layer(x, hx)
    outs_layer = [y, *states_list(state)]
    grad_layer = grads_of(loss_of(outs_layer), [x])

    x = x_base.clone().requires_grad_()
    ys, finals = [], []
    for d, sfx in enumerate(["_l0", "_l0_reverse"]):
        cell = LOOP_CELLS[name](I, H, dtype=DT, **layer_cell.kwargs)
        cell.load_state_dict({n: getattr(layer, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        s = (h0[d], c0[d]) if layer_cell.lstm else h0[d]
        steps = range(T - 1, -1, -1) if d else range(T)
        out = [None] * T
        for t in steps:
            s = cell(x[t], s)
            out[t] = s[0] if layer_cell.lstm else s
        ys.append(torch.stack(out))  # (T, B, H)
        finals.append(s)
    y_loop = torch.cat(ys, dim=2)  # (T, B, 2H)
    if layer_cell.lstm:
        outs_loop = [y_loop, torch.stack([f[0] for f in finals]), torch.stack([f[1] for f in finals])]
    else:
        outs_loop = [y_loop, torch.stack(finals)]
    grad_loop = grads_of(loss_of(outs_loop), [x])
    assert_all_close(outs_loop, outs_layer, ["output", "h_n", "c_n"][: len(outs_layer)])
    assert_all_close(grad_loop, grad_layer, ["input"])
