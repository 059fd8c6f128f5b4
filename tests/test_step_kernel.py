"""The single-step generation kernel (``rnnkit.engine.step``): one step equals the cell math of
``rnnkit.cells`` layer by layer (float64, to rounding), T steps equal the whole-sequence layer, and
the packed weights follow every change of the parameters."""
from __future__ import annotations

import itertools

import pytest
import torch
from core_helpers import CELLS, DT, MODE_IDS, random, states_list

import rnnkit
from rnnkit.cells import gru_cell, lstm_cell, rnn_cell
from rnnkit.engine import step as step_module
from rnnkit.engine.step import StepKernel, current_kernel

KINDS = MODE_IDS  # rnn_tanh, rnn_relu, lstm, lstm_proj (projection to 2), gru


def make_layer(kind: str, num_layers: int, bias: bool, I: int = 5, H: int = 7, dtype=DT, seed: int = 0):
    cell = CELLS[kind]
    torch.manual_seed(seed)
    return cell.kit(I, H, num_layers=num_layers, bias=bias, dtype=dtype, **cell.kwargs)


def random_state(layer, B: int, seed: int, dtype=DT):
    L, H, P = layer.num_layers, layer.hidden_size, layer.proj_size or layer.hidden_size
    h = random(L, B, P, seed=seed, dtype=dtype, scale=0.5)
    return (h, random(L, B, H, seed=seed + 1, dtype=dtype, scale=0.5)) if layer.cell == "lstm" else h


def cells_step(layer, x, state):
    """The expected step: ``rnnkit.cells`` applied layer after layer with the layer's own weights."""
    hs, cs = [], []
    for l, w in enumerate(layer.layer_weights()):
        if layer.cell == "lstm":
            h, c = lstm_cell(x, (state[0][l], state[1][l]), w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr)
            cs.append(c)
        elif layer.cell == "gru":
            h = gru_cell(x, state[l], w.w_ih, w.w_hh, w.b_ih, w.b_hh)
        else:
            h = rnn_cell(x, state[l], w.w_ih, w.w_hh, w.b_ih, w.b_hh, nonlinearity=layer.cell[4:])
        hs.append(h)
        x = h
    return x, (torch.stack(hs), torch.stack(cs)) if layer.cell == "lstm" else torch.stack(hs)


@pytest.mark.parametrize("kind,num_layers,bias,B", list(itertools.product(KINDS, (1, 3), (True, False), (1, 4))))
def test_one_step_equals_the_cells(kind, num_layers, bias, B):
    layer = make_layer(kind, num_layers, bias)
    x = random(B, 5, seed=10)
    state = random_state(layer, B, seed=20)
    y, new = StepKernel.for_layer(layer)(x, state)
    y_ref, new_ref = cells_step(layer, x, state)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(states_list(new), states_list(new_ref)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def assert_steps_equal_layer(layer) -> None:
    """T kernel steps from a random state equal the layer run over the whole sequence (float64)."""
    x = random(6, 3, 5, seed=1)  # (T, B, I)
    state0 = random_state(layer, 3, seed=2)
    y_ref, final_ref = layer(x, state0)
    kernel, state, ys = StepKernel.for_layer(layer), state0, []
    for t in range(6):
        y, state = kernel(x[t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys), y_ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(states_list(state), states_list(final_ref)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_steps_equal_the_whole_sequence_layer(kind):
    assert_steps_equal_layer(make_layer(kind, 2, True))


@pytest.mark.parametrize("kind", KINDS)
def test_zoneout_steps_at_its_expectation(kind):
    """A layer with zoneout, in eval mode, keeps p of the previous state in expectation; the kernel
    steps exactly that (for the LSTM, zoneout_cell apart for the cell state)."""
    cell = CELLS[kind]
    extra = {"zoneout_cell": 0.1} if cell.lstm else {}
    torch.manual_seed(3)
    assert_steps_equal_layer(cell.kit(5, 7, num_layers=2, dtype=DT, zoneout=0.3, **extra, **cell.kwargs).eval())


LN_KINDS = ["lstm", "lstm_proj", "gru"]


@pytest.mark.parametrize("kind", LN_KINDS)
def test_layer_normalised_stack_steps_through_the_cells(kind):
    """A layer-normalised stack (with zoneout's expectation too) steps through the readable cells: T steps equal
    the whole-sequence layer; its gains live in copies taken when packing, so an update of one repacks."""
    cell = CELLS[kind]
    extra = {"zoneout_cell": 0.1} if cell.lstm else {}
    torch.manual_seed(4)
    layer = cell.kit(5, 7, num_layers=2, dtype=DT, layer_norm=True, zoneout=0.2, **extra, **cell.kwargs).eval()
    with torch.no_grad():  # gains and biases away from their starting 1 and 0
        for name, p in layer.named_parameters():
            if name.startswith("ln_"):
                p.add_(torch.rand_like(p) - 0.5)
    assert_steps_equal_layer(layer)
    kernel = current_kernel(None, layer)
    assert kernel.normalised and kernel.table is None
    with torch.no_grad():
        layer.ln_hh_weight_l1.mul_(2)
    fresh = current_kernel(kernel, layer)
    assert fresh is not kernel
    assert_steps_equal_layer(layer)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_and_strided_states(kind):
    """float32 agrees with float64 to float32 precision; a rows-first (B, L, H) view of the state, as
    the searches hold it, gives the same step; the state passed in is not modified."""
    layer64 = make_layer(kind, 2, True)
    layer32 = make_layer(kind, 2, True, dtype=torch.float32)
    layer32.load_state_dict({k: v.float() for k, v in layer64.state_dict().items()})
    x = random(4, 5, seed=3)
    state = random_state(layer64, 4, seed=4)
    y64, _ = StepKernel.for_layer(layer64)(x, state)
    state32 = [s.float() for s in states_list(state)]
    rows_first = [s.transpose(0, 1).contiguous().transpose(0, 1) for s in state32]  # same values, other strides
    before = [s.clone() for s in rows_first]
    kernel32 = StepKernel.for_layer(layer32)
    as_state = lambda ss: tuple(ss) if layer32.cell == "lstm" else ss[0]  # noqa: E731
    y32, new32 = kernel32(x.float(), as_state(state32))
    y32s, new32s = kernel32(x.float(), as_state(rows_first))
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y32s, y32, rtol=0, atol=0)
    for a, b in zip(states_list(new32s), states_list(new32)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(rows_first, before):
        assert torch.equal(a, b)
    # layer_dim=1: the state held rows first, (B, L, H), in and out
    y_b, new_b = kernel32(x.float(), as_state([s.transpose(0, 1).contiguous() for s in state32]), layer_dim=1)
    torch.testing.assert_close(y_b, y32, rtol=0, atol=0)
    for a, b in zip(states_list(new_b), states_list(new32)):
        torch.testing.assert_close(a, b.transpose(0, 1), rtol=0, atol=0)


@pytest.mark.parametrize("table", [True, False], ids=["table", "no_table"])
@pytest.mark.parametrize("kind", KINDS)
def test_token_steps_equal_embedding_then_step(kind, table, monkeypatch):
    """``step_tokens`` — through the precomputed token-projection table, or through the embedding when
    the table would be too large — equals embedding the tokens and stepping."""
    if not table:
        monkeypatch.setattr(step_module, "TABLE_LIMIT_BYTES", 0)
    layer = make_layer(kind, 2, True)
    embedding = random(11, 5, seed=30)
    kernel = StepKernel.for_layer(layer, embedding)
    assert (kernel.table is not None) == table
    tokens = torch.tensor([3, 0, 10, 3])
    state = random_state(layer, 4, seed=31)
    y, new = kernel.step_tokens(tokens, state)
    y_ref, new_ref = cells_step(layer, embedding[tokens], state)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(states_list(new), states_list(new_ref)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_several_rows_in_float32(kind):
    """Beams step several rows at once; in float32 on the CPU those products go through oneDNN with
    the weights reordered once per row count. Same results as float64 to float32 precision, for
    either input kind, and the same as one row at a time."""
    layer64 = make_layer(kind, 2, True)
    layer32 = make_layer(kind, 2, True, dtype=torch.float32)
    layer32.load_state_dict({k: v.float() for k, v in layer64.state_dict().items()})
    embedding = random(11, 5, seed=40)
    kernel = StepKernel.for_layer(layer32, embedding.float())
    tokens = torch.tensor([3, 0, 10, 3, 7])
    state = random_state(layer64, 5, seed=41)
    state32 = tuple(s.float() for s in state) if layer32.cell == "lstm" else state.float()
    for run in (lambda: kernel.step_tokens(tokens, state32), lambda: kernel(embedding[tokens].float(), state32)):
        for _ in range(2):  # the second call reuses the reordered weights
            y, new = run()
            y_ref, new_ref = cells_step(layer64, embedding[tokens], state)
            torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
            for a, e in zip(states_list(new), states_list(new_ref)):
                torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5)
    one = StepKernel.for_layer(layer32, embedding.float())
    for b in range(5):
        row = tuple(s[:, b : b + 1] for s in states_list(state32))
        y1, _ = one.step_tokens(tokens[b : b + 1], row if layer32.cell == "lstm" else row[0])
        torch.testing.assert_close(y1[0], y[b], rtol=1e-5, atol=1e-6)
    if step_module.ONEDNN:  # the several-row path really ran
        products = [q for p in kernel.layers for q in (p.w, p.w_x, p.w_h) if q is not None]
        assert any(q.packs for q in products)


def test_repacks_when_the_weights_change():
    layer = make_layer("lstm", 2, True)
    x, state = random(2, 5, seed=5), random_state(layer, 2, seed=6)
    kernel = current_kernel(None, layer)
    assert current_kernel(kernel, layer) is kernel  # nothing changed: no repacking

    def check(k):
        torch.testing.assert_close(k(x, state)[0], cells_step(layer, x, state)[0], rtol=1e-12, atol=1e-12)

    # an optimiser step updates the parameters in place
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(random(3, 2, 5, seed=7))[0].sum().backward()
    opt.step()
    fresh = current_kernel(kernel, layer)
    assert fresh is not kernel
    check(fresh)
    # load_state_dict copies into the same tensors
    other = make_layer("lstm", 2, True, seed=1)
    layer.load_state_dict(other.state_dict())
    again = current_kernel(fresh, layer)
    assert again is not fresh
    check(again)
    # a parameter replaced by a new tensor object
    layer.bias_hh_l1 = torch.nn.Parameter(torch.ones_like(layer.bias_hh_l1))
    check(current_kernel(again, layer))
    # the embedding feeding the token table is part of the version
    embedding = torch.nn.Embedding(7, 5, dtype=DT)
    with_table = current_kernel(None, layer, embedding.weight)
    assert current_kernel(with_table, layer, embedding.weight) is with_table
    with torch.no_grad():
        embedding.weight.mul_(2)
    fresh = current_kernel(with_table, layer, embedding.weight)
    assert fresh is not with_table
    tokens = torch.tensor([1, 6])
    expected = cells_step(layer, embedding.weight[tokens], state)[0]
    torch.testing.assert_close(fresh.step_tokens(tokens, state)[0], expected)


def test_model_dtype_change_repacks():
    layer = make_layer("gru", 1, True, dtype=torch.float32)
    kernel = current_kernel(None, layer)
    layer.double()
    fresh = current_kernel(kernel, layer)
    assert fresh is not kernel and fresh.layers[0].w_h.w.dtype == torch.float64


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="bidirectional=True"):
        StepKernel.for_layer(rnnkit.GRU(3, 4, bidirectional=True))
    layer = make_layer("gru", 1, True)
    with pytest.raises(ValueError, match="unknown mode 'elman'"):
        StepKernel("elman", layer.layer_weights())
    with pytest.raises(ValueError, match="at least one layer"):
        StepKernel("gru", [])
    with pytest.raises(ValueError, match=r"embedding must have shape \(V, 5\).*got \(4, 3\)"):
        StepKernel.for_layer(layer, torch.zeros(4, 3, dtype=DT))
    with pytest.raises(ValueError, match="packed without an embedding"):
        StepKernel.for_layer(layer).step_tokens(torch.tensor([1]), torch.zeros(1, 1, 7, dtype=DT))


@pytest.mark.parametrize("kind", KINDS)
def test_output_head_equals_the_linear_layer_and_follows_its_weights(kind):
    """``output=(weight, bias)`` packs the layer after the top of the stack: ``logits`` equals
    ``F.linear`` on the top state, with or without a bias, and an update of the head repacks."""
    layer = make_layer(kind, 2, True)
    H_out = layer.proj_size or layer.hidden_size
    head = torch.nn.Linear(H_out, 9, dtype=DT)
    x, state = random(3, 5, seed=50), random_state(layer, 3, seed=51)
    kernel = current_kernel(None, layer, None, (head.weight, head.bias))
    y, _ = kernel(x, state)
    torch.testing.assert_close(kernel.logits(y), head(y), rtol=1e-12, atol=1e-12)
    assert current_kernel(kernel, layer, None, (head.weight, head.bias)) is kernel
    with torch.no_grad():
        head.bias.add_(1)
    fresh = current_kernel(kernel, layer, None, (head.weight, head.bias))
    assert fresh is not kernel
    torch.testing.assert_close(fresh.logits(y), head(y), rtol=1e-12, atol=1e-12)
    no_bias = StepKernel.for_layer(layer, output=(head.weight, None))
    torch.testing.assert_close(no_bias.logits(y), y @ head.weight.t(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=rf"output must be \(weight \(V, {H_out}\).*got weight \(9, 3\)"):
        StepKernel.for_layer(layer, output=(torch.zeros(9, 3, dtype=DT), None))
    with pytest.raises(ValueError, match="packed without an output layer"):
        StepKernel.for_layer(layer).logits(y)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_one_row_with_two_threads_splits_large_weights(kind, monkeypatch):
    """With more than one thread, a one-row product of a large float32 weight goes through oneDNN (the
    columns split over the threads); it computes what the one-thread ``addmm`` path computes."""
    monkeypatch.setattr(step_module, "THREADED_MIN_ELEMENTS", 0)  # every weight counts as large here
    layer = make_layer(kind, 2, True, dtype=torch.float32)
    head = torch.nn.Linear(layer.hidden_size, 9)
    embedding = random(11, 5, seed=60, dtype=torch.float32)
    kernel = StepKernel.for_layer(layer, embedding, (head.weight, head.bias))
    state = tuple(s.float() for s in states_list(random_state(layer, 1, seed=61)))
    state = state if kind == "lstm" else state[0]
    tokens = torch.tensor([4])
    threads = torch.get_num_threads()
    try:
        results = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            y, new = kernel.step_tokens(tokens, state)
            results[n] = (kernel.logits(y), *states_list(new))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(results[2], results[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if step_module.ONEDNN:  # the threaded one-row path really ran
        assert 1 in kernel.head.packs
