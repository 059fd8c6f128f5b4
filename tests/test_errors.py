"""Bad input is refused with ValueError/TypeError whose message names the module and gives both what
was expected and what was received. Each case lists the fragments the message must contain.

Only a CPU here: the device check is exercised with tensors on the ``meta`` device.
"""
from __future__ import annotations

import pytest
import torch
from core_helpers import DT, pack_padded_sequence

import rnnkit

T, B, I, H = 4, 2, 3, 5


def lstm(**kw):
    return rnnkit.LSTM(I, H, num_layers=2, dtype=DT, **kw)


def gru(**kw):
    return rnnkit.GRU(I, H, dtype=DT, **kw)


def x(*shape, dtype=DT, device="cpu"):
    return torch.zeros(*(shape or (T, B, I)), dtype=dtype, device=device)


def set_engine_then_run():
    m = gru()
    m.engine = "bogus"  # accepted as an attribute; refused when the layer runs
    return m(x())


LAYER_CASES = [
    # (call, exception, fragments of the message)
    pytest.param(lambda: lstm()(x(T, B, I, 1)),
                 ValueError, ["rnnkit.LSTM", "2-D", "3-D", "got 4-D", "(4, 2, 3, 1)"], id="rank-4"),
    pytest.param(lambda: lstm()(x(T)), ValueError, ["rnnkit.LSTM", "2-D", "3-D", "got 1-D"], id="rank-1"),
    pytest.param(lambda: lstm()(x(T, B, 7)), ValueError, ["rnnkit.LSTM", "7 features", "input_size=3"], id="features"),
    pytest.param(lambda: lstm()(x(0, B, I)), ValueError, ["rnnkit.LSTM", "no time steps", "(0, 2, 3)"], id="no-steps"),
    pytest.param(lambda: lstm()([[0.0] * I]), TypeError, ["rnnkit.LSTM", "Tensor", "list"], id="not-a-tensor"),
    pytest.param(lambda: lstm()(x(dtype=torch.float32)),
                 TypeError, ["rnnkit.LSTM", "torch.float64", "got torch.float32"], id="input-dtype"),
    pytest.param(lambda: gru()(x(device="meta")),
                 ValueError, ["rnnkit.GRU", "input", "meta", "cpu"], id="input-device"),
    # initial states
    pytest.param(lambda: lstm()(x(), (x(2, B, 4), x(2, B, H))),
                 ValueError, ["rnnkit.LSTM", "h_0", "(2, 2, 4)", "expected (2, 2, 5)"], id="h0-shape"),
    pytest.param(lambda: lstm()(x(), (x(2, B, H), x(2, 3, H))),
                 ValueError, ["rnnkit.LSTM", "c_0", "(2, 3, 5)", "expected (2, 2, 5)"], id="c0-shape"),
    pytest.param(lambda: gru()(x(), x(2, B, H)),
                 ValueError, ["rnnkit.GRU", "h_0", "(2, 2, 5)", "expected (1, 2, 5)"], id="h0-layers"),
    pytest.param(lambda: lstm(proj_size=2)(x(), (x(2, B, H), x(2, B, H))),
                 ValueError, ["rnnkit.LSTM", "h_0", "(2, 2, 5)", "expected (2, 2, 2)"], id="h0-proj"),
    pytest.param(lambda: gru()(x(T, I), x(1, B, H)),
                 ValueError, ["rnnkit.GRU", "unbatched", "(1, 5)", "got 3-D"], id="h0-unbatched-rank"),
    pytest.param(lambda: gru()(x(T, I), x(2, H)),
                 ValueError, ["rnnkit.GRU", "h_0", "(2, 5)", "expected (1, 5)"], id="h0-unbatched-shape"),
    pytest.param(lambda: lstm()(x(), (x(2, B, H, dtype=torch.float32), x(2, B, H))),
                 TypeError, ["rnnkit.LSTM", "h_0", "torch.float64", "got torch.float32"], id="h0-dtype"),
    pytest.param(lambda: lstm()(x(), (x(2, B, H), x(2, B, H, dtype=torch.float32))),
                 TypeError, ["rnnkit.LSTM", "c_0", "torch.float64", "got torch.float32"], id="c0-dtype"),
    pytest.param(lambda: gru()(x(), x(1, B, H, device="meta")),
                 ValueError, ["rnnkit.GRU", "h_0", "meta", "cpu"], id="h0-device"),
    pytest.param(lambda: lstm()(x(), x(2, B, H)),
                 TypeError, ["rnnkit.LSTM", "(h_0, c_0)", "Tensor"], id="lstm-hx-not-tuple"),
    pytest.param(lambda: gru()(x(), (x(1, B, H),)),
                 TypeError, ["rnnkit.GRU", "Tensor h_0", "tuple"], id="gru-hx-tuple"),
    # lengths
    pytest.param(lambda: gru()(x(), lengths=[T, 0]),
                 ValueError, ["rnnkit.GRU", ">= 1", "got 0", "sequence 1"], id="lengths-zero"),
    pytest.param(lambda: gru()(x(), lengths=[-1, T]),
                 ValueError, ["rnnkit.GRU", ">= 1", "got -1", "sequence 0"], id="lengths-negative"),
    pytest.param(lambda: gru()(x(), lengths=[T, T + 1]),
                 ValueError, ["rnnkit.GRU", "length 5", "sequence 1", "4 time steps"], id="lengths-too-long"),
    pytest.param(lambda: gru()(x(), lengths=[T, T, T]),
                 ValueError, ["rnnkit.GRU", "(2,)", "got (3,)"], id="lengths-count"),
    pytest.param(lambda: gru()(x(), lengths=torch.tensor([[T, T]])),
                 ValueError, ["rnnkit.GRU", "(2,)", "got (1, 2)"], id="lengths-rank"),
    pytest.param(lambda: gru()(x(), lengths=[4.0, 3.0]),
                 TypeError, ["rnnkit.GRU", "integers", "torch.float32"], id="lengths-float-list"),
    pytest.param(lambda: gru()(x(), lengths=torch.tensor([4.0, 3.0], dtype=DT)),
                 TypeError, ["rnnkit.GRU", "integers", "torch.float64"], id="lengths-float-tensor"),
    pytest.param(lambda: gru()(x(), lengths=torch.tensor([True, True])),
                 TypeError, ["rnnkit.GRU", "integers", "torch.bool"], id="lengths-bool"),
    pytest.param(lambda: gru()(x(), lengths="ab"), TypeError, ["rnnkit.GRU", "lengths", "str"], id="lengths-str"),
    pytest.param(lambda: gru()(x(T, I), lengths=[T]),
                 ValueError, ["rnnkit.GRU", "lengths=", "3-D"], id="lengths-unbatched"),
    pytest.param(lambda: gru()(pack_padded_sequence(x(), [T, 3]), lengths=[T, 3]),
                 ValueError, ["rnnkit.GRU", "lengths=", "PackedSequence"], id="lengths-packed"),
    pytest.param(lambda: gru()(pack_padded_sequence(x(T, B, 7), [T, 3])),
                 ValueError, ["rnnkit.GRU", f"(N, {I})", "got (7, 7)"], id="packed-features"),
    # constructor options
    pytest.param(lambda: gru(engine="bogus"), ValueError, ["rnnkit.GRU", "'bogus'", "'fused'"], id="engine-ctor"),
    pytest.param(set_engine_then_run, ValueError, ["rnnkit.GRU", "'bogus'", "'fused'"], id="engine-attribute"),
    pytest.param(lambda: rnnkit.RNN(I, H, nonlinearity="sigmoid"),
                 ValueError, ["rnnkit.RNN", "'sigmoid'", "'tanh'", "'relu'"], id="nonlinearity"),
    pytest.param(lambda: rnnkit.GRU(I, 0),
                 ValueError, ["rnnkit.GRU", "hidden_size", "positive", "got 0"], id="hidden-zero"),
    pytest.param(lambda: rnnkit.LSTM(I, -3),
                 ValueError, ["rnnkit.LSTM", "hidden_size", "positive", "got -3"], id="hidden-negative"),
    pytest.param(lambda: rnnkit.RNN(I, 2.5),
                 TypeError, ["rnnkit.RNN", "hidden_size", "int", "got float"], id="hidden-float"),
    pytest.param(lambda: rnnkit.GRU(0, H),
                 ValueError, ["rnnkit.GRU", "input_size", "positive", "got 0"], id="input-size-zero"),
    pytest.param(lambda: rnnkit.GRU(I, H, num_layers=0),
                 ValueError, ["rnnkit.GRU", "num_layers", "positive", "got 0"], id="num-layers-zero"),
    pytest.param(lambda: rnnkit.GRU(I, H, proj_size=2),
                 ValueError, ["rnnkit.GRU", "proj_size", "LSTM", "proj_size=2"], id="proj-gru"),
    pytest.param(lambda: rnnkit.RNN(I, H, proj_size=2),
                 ValueError, ["rnnkit.RNN", "proj_size", "LSTM", "proj_size=2"], id="proj-rnn"),
    pytest.param(lambda: rnnkit.LSTM(I, H, proj_size=H),
                 ValueError, ["rnnkit.LSTM", "smaller than hidden_size", "5 >= 5"], id="proj-equal"),
    pytest.param(lambda: rnnkit.LSTM(I, H, proj_size=7),
                 ValueError, ["rnnkit.LSTM", "smaller than hidden_size", "7 >= 5"], id="proj-larger"),
    pytest.param(lambda: rnnkit.LSTM(I, H, proj_size=-1),
                 ValueError, ["rnnkit.LSTM", "proj_size", ">= 0", "-1"], id="proj-negative"),
    pytest.param(lambda: lstm(dropout=1.5),
                 ValueError, ["rnnkit.LSTM", "dropout", "[0, 1]", "got 1.5"], id="dropout-above"),
    pytest.param(lambda: lstm(dropout=-0.1),
                 ValueError, ["rnnkit.LSTM", "dropout", "[0, 1]", "got -0.1"], id="dropout-below"),
    pytest.param(lambda: lstm(dropout=float("nan")),
                 ValueError, ["rnnkit.LSTM", "dropout", "[0, 1]", "got nan"], id="dropout-nan"),
]


@pytest.mark.parametrize("call, exc, fragments", LAYER_CASES)
def test_layer_refuses(assert_error, call, exc, fragments):
    assert_error(exc, call, *fragments)


def cell(kind="lstm"):
    return {"lstm": rnnkit.LSTMCell, "gru": rnnkit.GRUCell, "rnn": rnnkit.RNNCell}[kind](I, H, dtype=DT)


CELL_CASES = [
    pytest.param(lambda: cell()(x(B, 2, I)), ValueError, ["rnnkit.LSTMCell", "1-D", "2-D", "got 3-D"], id="rank-3"),
    pytest.param(lambda: cell("gru")(x(B, 4)),
                 ValueError, ["rnnkit.GRUCell", "4 features", "input_size=3"], id="features"),
    pytest.param(lambda: cell("rnn")(x(B, I, dtype=torch.float32)),
                 TypeError, ["rnnkit.RNNCell", "torch.float64", "got torch.float32"], id="input-dtype"),
    pytest.param(lambda: cell("rnn")(x(B, I, device="meta")),
                 ValueError, ["rnnkit.RNNCell", "meta", "cpu"], id="input-device"),
    pytest.param(lambda: cell()(x(B, I), (x(B, 4), x(B, H))),
                 ValueError, ["rnnkit.LSTMCell", "h has shape (2, 4)", "expected (2, 5)"], id="h-shape"),
    pytest.param(lambda: cell()(x(B, I), (x(B, H), x(3, H))),
                 ValueError, ["rnnkit.LSTMCell", "c has shape (3, 5)", "expected (2, 5)"], id="c-shape"),
    pytest.param(lambda: cell("gru")(x(I), x(B, H)),
                 ValueError, ["rnnkit.GRUCell", "(2, 5)", "expected (5,)"], id="h-unbatched"),
    pytest.param(lambda: cell("gru")(x(B, I), x(B, H, dtype=torch.float32)),
                 TypeError, ["rnnkit.GRUCell", "h", "torch.float64", "got torch.float32"], id="h-dtype"),
    pytest.param(lambda: cell()(x(B, I), x(B, H)),
                 TypeError, ["rnnkit.LSTMCell", "(h, c)", "Tensor"], id="lstm-hx-not-tuple"),
    pytest.param(lambda: rnnkit.RNNCell(I, H, nonlinearity="gelu"),
                 ValueError, ["rnnkit.RNNCell", "'gelu'", "'tanh'"], id="nonlinearity"),
    pytest.param(lambda: rnnkit.GRUCell(I, 0),
                 ValueError, ["rnnkit.GRUCell", "hidden_size", "got 0"], id="hidden-zero"),
]


@pytest.mark.parametrize("call, exc, fragments", CELL_CASES)
def test_cell_refuses(assert_error, call, exc, fragments):
    assert_error(exc, call, *fragments)


def test_dropout_with_one_layer_warns():
    """Not an error (torch.nn accepts it too), but it does nothing: say so, pointing at the caller."""
    with pytest.warns(UserWarning, match="rnnkit.LSTM: dropout=0.5 has no effect with num_layers=1") as record:
        rnnkit.LSTM(I, H, dropout=0.5)
    assert record[0].filename == __file__



#: bad calls, as (layer call, cell call or None where a cell has no such input)
TORCH_NN_ERRORS = {
    "state-shape": (lambda m: m(torch.randn(5, 2, I), torch.randn(1, 3, H)),
                    lambda m: m(torch.randn(2, I), torch.randn(3, H))),
    "features": (lambda m: m(torch.randn(5, 2, I + 1)), lambda m: m(torch.randn(2, I + 1))),
    "rank": (lambda m: m(torch.randn(5)), lambda m: m(torch.randn(2, 3, I))),
    "dtype": (lambda m: m(torch.randn(5, 2, I, dtype=torch.float64)),
              lambda m: m(torch.randn(2, I, dtype=torch.float64))),
    "no-steps": (lambda m: m(torch.randn(0, 2, I)), None),
}


@pytest.mark.parametrize("case", TORCH_NN_ERRORS)
@pytest.mark.parametrize("cls", ["GRU", "GRUCell"])
def test_errors_are_also_the_exceptions_torch_nn_raises(cls, case):
    """Code that catches torch.nn's exception for a bad input (RuntimeError for shapes, ValueError for a
    layer's dtype, RuntimeError for a cell's) catches rnnkit's too, whose classes say ValueError/TypeError
    as well."""
    call = TORCH_NN_ERRORS[case][1 if cls.endswith("Cell") else 0]
    if call is None:
        pytest.skip("a cell reads one step")
    with pytest.raises(Exception) as torch_error:
        call(getattr(torch.nn, cls)(I, H))
    with pytest.raises(type(torch_error.value)):
        call(getattr(rnnkit, cls)(I, H))
