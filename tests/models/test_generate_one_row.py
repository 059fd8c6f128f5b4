"""Generation of one row on the CPU runs in numpy (``rnnkit.engine.step_numpy.OneRowStep`` driven by
``decoding.one_row``): every step equals the torch ``StepKernel`` it mirrors (float64, to rounding), and
``LanguageModel.generate`` with B = 1 returns the same tokens, lengths and scores as the torch path — for
greedy decoding, sampling with a seeded generator, EOS, long outputs, zoneout and projections."""
from __future__ import annotations

import pytest
import torch

from rnnkit.engine import step as step_module
from rnnkit.engine import step_numpy
from rnnkit.engine.step import StepKernel
from rnnkit.models import LanguageModel

pytestmark = pytest.mark.skipif(not step_numpy.available(), reason="threadpoolctl cannot control numpy's BLAS here")

DT = torch.float64
LAYERS = {  # name: (layer class, keyword arguments)
    "lstm": ("LSTM", {}), "lstm_proj": ("LSTM", {"proj_size": 3}), "gru": ("GRU", {}),
    "rnn_tanh": ("RNN", {}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm_zoneout": ("LSTM", {"zoneout": 0.3, "zoneout_cell": 0.2}), "gru_zoneout": ("GRU", {"zoneout": 0.25}),
}


def layer_and_head(name: str, dtype=DT):
    import rnnkit

    cls, kw = LAYERS[name]
    torch.manual_seed(0)
    layer = getattr(rnnkit, cls)(5, 7, num_layers=2, dtype=dtype, **kw).eval()
    head = torch.nn.Linear(kw.get("proj_size", 7), 9, dtype=dtype)
    embedding = torch.randn(11, 5, dtype=dtype)
    return layer, head, embedding


def initial_state(layer, dtype=DT):
    g = torch.Generator().manual_seed(1)
    P = layer.proj_size or layer.hidden_size
    h = torch.randn(2, 1, P, generator=g, dtype=dtype) * 0.5
    return (h, torch.randn(2, 1, 7, generator=g, dtype=dtype) * 0.5) if layer.cell == "lstm" else h


@pytest.mark.parametrize("table", [True, False], ids=["table", "no_table"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_numpy_steps_equal_the_torch_kernel(name, table, monkeypatch):
    if not table:
        monkeypatch.setattr(step_module, "TABLE_LIMIT_BYTES", 0)
    layer, head, embedding = layer_and_head(name)
    kernel = StepKernel.for_layer(layer, embedding, (head.weight, head.bias))
    assert (kernel.table is not None) == table
    state = initial_state(layer)
    fast = step_numpy.OneRowStep(kernel, state)
    for token in (3, 0, 10, 3, 7):
        y, state = kernel.step_tokens(torch.tensor([token]), state)
        torch.testing.assert_close(torch.from_numpy(fast.step(token).copy()), kernel.logits(y)[0],
                                   rtol=1e-12, atol=1e-12)
    got = fast.state()
    for a, e in zip(got if isinstance(got, tuple) else [got], state if isinstance(state, tuple) else [state]):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def model(cell: str, dtype=DT, **kw) -> LanguageModel:
    torch.manual_seed(3)
    return LanguageModel(vocab_size=13, embed_size=6, hidden_size=8, num_layers=2, cell=cell, **kw).to(dtype).eval()


def torch_path(monkeypatch, fn):
    """``fn()`` with the numpy path switched off: the searches of ``decoding`` over ``StepKernel``."""
    with monkeypatch.context() as m:
        m.setattr(step_numpy, "available", lambda: False)
        return fn()


def assert_same(a, b, rtol=1e-12):
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths)
    assert a.scores.dtype == b.scores.dtype
    torch.testing.assert_close(a.scores, b.scores, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_generate_one_row_equals_the_torch_path(cell, monkeypatch):
    m = model(cell)
    prompt = torch.tensor([[1, 4, 2]])
    for kw in ({}, {"eos_id": 5}, {"method": "sample", "temperature": 0.7, "top_k": 5},
               {"method": "sample", "top_p": 0.8}):
        fresh = lambda: torch.Generator().manual_seed(11) if kw.get("method") == "sample" else None  # noqa: E731
        fast = m.generate(prompt, 150, generator=fresh(), **kw)  # more steps than one block of logits
        slow = torch_path(monkeypatch, lambda: m.generate(prompt, 150, generator=fresh(), **kw))
        assert_same(fast, slow)
    # the greedy scores are the model's own log-probabilities of its tokens
    out = m.generate(prompt, 70)
    seq = torch.cat([prompt, out.tokens], dim=1)
    with torch.no_grad():
        lp = m(seq)[0][:, 2:-1].log_softmax(2).gather(2, out.tokens.unsqueeze(2)).sum()
    torch.testing.assert_close(out.scores[0], lp, rtol=1e-10, atol=1e-10)


def test_eos_ends_the_row():
    m = model("gru")
    prompt = torch.tensor([[2]])
    first = int(m.generate(prompt, 1).tokens[0, 0])
    out = m.generate(prompt, 20, eos_id=first)
    assert out.tokens.tolist() == [[first]] and out.lengths.tolist() == [1]


def test_float32_tokens_equal_the_torch_path(monkeypatch):
    m = model("lstm", dtype=torch.float32, tie_weights=False)
    prompt = torch.tensor([[3, 1]])
    assert_same(m.generate(prompt, 40), torch_path(monkeypatch, lambda: m.generate(prompt, 40)), rtol=1e-4)


def test_blas_threads_are_restored():
    controllers = step_numpy._blas_controllers()
    before = [c.get_num_threads() for c in controllers]
    with step_numpy.blas_one_thread():
        assert all(c.get_num_threads() == 1 for c in controllers)
    assert [c.get_num_threads() for c in controllers] == before


def test_refuses_what_it_cannot_run():
    layer, head, embedding = layer_and_head("gru")
    kernel = StepKernel.for_layer(layer, embedding)  # no output layer
    assert not step_numpy.supports(kernel, initial_state(layer))
    with pytest.raises(ValueError, match="embedding and an output layer, and a state with one row"):
        step_numpy.OneRowStep(kernel, initial_state(layer))
    two_rows = StepKernel.for_layer(layer, embedding, (head.weight, head.bias))
    assert not step_numpy.supports(two_rows, torch.zeros(2, 2, 7, dtype=DT))


def test_overlapping_generations_restore_the_threads_once():
    controllers = step_numpy._blas_controllers()
    before = [c.get_num_threads() for c in controllers]
    with step_numpy.blas_one_thread():
        with step_numpy.blas_one_thread():
            pass
        assert all(c.get_num_threads() == 1 for c in controllers)  # the outer generation still runs
    assert [c.get_num_threads() for c in controllers] == before


def test_chosen_only_where_it_is_faster(monkeypatch):
    """One torch thread: always numpy. More threads: numpy unless a weight is larger than
    NUMPY_MAX_ELEMENTS, where torch's threaded one-row product reads the weights faster; generate
    follows that choice (the torch path then gives the same tokens)."""
    m = model("lstm")
    kernel = m.kernel()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert step_numpy.preferred(kernel)
        torch.set_num_threads(2)
        assert step_numpy.preferred(kernel)
        monkeypatch.setattr(step_numpy, "NUMPY_MAX_ELEMENTS", 10)
        assert not step_numpy.preferred(kernel)
        built = []
        monkeypatch.setattr(step_numpy, "OneRowStep", lambda *a: built.append(a))
        prompt = torch.tensor([[1, 2]])
        out = m.generate(prompt, 5)
        assert not built and out.tokens.shape == (1, 5)
    finally:
        torch.set_num_threads(threads)


def test_needs_the_embedding():
    layer, head, embedding = layer_and_head("lstm")
    no_embedding = StepKernel.for_layer(layer, None, (head.weight, head.bias))
    assert not step_numpy.supports(no_embedding, initial_state(layer))


def test_another_default_device_leaves_the_one_row_path_on_the_cpu():
    """``torch.set_default_device`` (here: the meta device) does not move the numpy path's results off the CPU."""
    m = model("lstm")
    prompt = torch.tensor([[1, 4, 2]])
    expected = m.generate(prompt, 70)
    with torch.device("meta"):
        got = m.generate(prompt, 70)
    assert got.tokens.device.type == got.scores.device.type == "cpu"
    assert_same(got, expected)
