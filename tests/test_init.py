"""Initialisation (``init=`` and ``forget_bias=``, ``rnnkit/layers/init.py``) of the layers and cells.

- ``"torch"``: the same draws as torch.nn after the same seed (so the statistics match by construction),
  with or without layer norm, whose gains start at 1 and biases at 0.
- ``"orthogonal"``: every gate block of W_hh has orthonormal rows and columns (columns only when a
  projection makes it (H, P)); input weights inside the per-gate Xavier bound and spread over it;
  biases zero.
- ``"identity"``: W_hh blocks are the identity, biases zero, input weights N(0, 0.001²); the IRNN then
  copies a non-negative state forward; a warning for every cell but ReLU.
- ``forget_bias``: b_if + b_hf equals it, every other entry is what the scheme drew.
"""
from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
from torch import nn

import rnnkit

I, H = 6, 8
GATES = {rnnkit.LSTM: 4, rnnkit.GRU: 3, rnnkit.RNN: 1, rnnkit.LSTMCell: 4, rnnkit.GRUCell: 3, rnnkit.RNNCell: 1}
LAYERS = [(rnnkit.LSTM, {}), (rnnkit.LSTM, {"proj_size": 3}), (rnnkit.GRU, {}), (rnnkit.RNN, {"nonlinearity": "relu"}),
          (rnnkit.LSTMCell, {}), (rnnkit.GRUCell, {}), (rnnkit.RNNCell, {})]
LAYER_IDS = ["lstm", "lstm_proj", "gru", "rnn_relu", "lstm_cell", "gru_cell", "rnn_cell"]


def build(cls, init: str, **kwargs):
    """A module with every structural option its kind has: 2 layers and both directions for layers."""
    if cls in (rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN):
        kwargs = {"num_layers": 2, "bidirectional": True, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # init="identity" warns for most cells; tested below
        return cls(I, H, init=init, **kwargs)


def gate_blocks(w: torch.Tensor):
    return w.detach().split(H, dim=0)


def forget_biases(m) -> list[torch.Tensor]:
    """b_if + b_hf of every layer-direction (torch's gate order i, f, g, o)."""
    return [(m.get_parameter(n) + m.get_parameter(n.replace("bias_ih", "bias_hh"))).detach()[H : 2 * H]
            for n, _ in m.named_parameters() if n.startswith("bias_ih")]


@pytest.mark.parametrize("cls, kwargs", LAYERS, ids=LAYER_IDS)
def test_orthogonal(cls, kwargs):
    m = build(cls, "orthogonal", **kwargs)
    for name, p in m.named_parameters():
        role = name.split("_l")[0]  # weight_hh_l1_reverse → weight_hh
        if role == "weight_hh":
            blocks = gate_blocks(p)
            assert len(blocks) == GATES[cls]
            for w in blocks:  # (H, H), or (H, P) with a projection: orthonormal columns
                eye_cols = torch.eye(w.shape[1])
                torch.testing.assert_close(w.T @ w, eye_cols, atol=1e-5, rtol=0, msg=name)
                if w.shape[0] == w.shape[1]:
                    torch.testing.assert_close(w @ w.T, eye_cols, atol=1e-5, rtol=0, msg=name)
            assert not torch.equal(blocks[0], blocks[-1]) or len(blocks) == 1  # one draw per gate
        elif role == "weight_ih":
            bound = math.sqrt(6 / (H + p.shape[1]))  # Xavier-uniform of one (H, fan_in) gate block
            for w in gate_blocks(p):
                assert w.abs().max() <= bound
                assert w.abs().max() > 0.6 * bound, name  # spread over the range, not a tiny scale
        elif role.startswith("bias"):
            assert not p.any(), name
        elif role == "weight_hr":  # the projection keeps torch's rule
            assert p.abs().max() <= 1 / math.sqrt(H)


@pytest.mark.parametrize("cls, kwargs", LAYERS, ids=LAYER_IDS)
def test_identity(cls, kwargs):
    m = build(cls, "identity", **kwargs)
    for name, p in m.named_parameters():
        if name.startswith("weight_hh"):
            for w in gate_blocks(p):
                assert torch.equal(w, torch.eye(*w.shape)), name
        elif name.startswith("bias"):
            assert not p.any(), name
        elif name.startswith("weight_ih"):
            assert p.abs().max() < 6e-3 and 0.5e-3 < p.std() < 1.5e-3, name  # N(0, 0.001²)


def test_irnn_copies_a_non_negative_state_forward():
    """Le et al.'s point: ReLU with W_hh = I and zero bias passes the state on unchanged."""
    m = rnnkit.RNN(I, H, nonlinearity="relu", init="identity", dtype=torch.float64)
    h0 = torch.rand(1, 3, H, dtype=torch.float64)
    y, h_n = m(torch.zeros(20, 3, I, dtype=torch.float64), h0)
    torch.testing.assert_close(y, h0.expand(20, 3, H))


@pytest.mark.parametrize(
    "make",
    [lambda: rnnkit.LSTM(I, H, init="identity"), lambda: rnnkit.GRU(I, H, init="identity"),
     lambda: rnnkit.RNN(I, H, init="identity"), lambda: rnnkit.LSTMCell(I, H, init="identity"),
     lambda: rnnkit.GRUCell(I, H, init="identity"), lambda: rnnkit.RNNCell(I, H, init="identity")],
    ids=["LSTM", "GRU", "RNN_tanh", "LSTMCell", "GRUCell", "RNNCell_tanh"],
)
def test_identity_warns_unless_relu(make):
    with pytest.warns(UserWarning, match=r"init='identity' is the IRNN recipe.*relu"):
        make()


def test_identity_with_relu_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnnkit.RNN(I, H, nonlinearity="relu", init="identity")
        rnnkit.RNNCell(I, H, nonlinearity="relu", init="identity")


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell])
def test_identity_warning_points_at_the_caller(cls):
    with pytest.warns(UserWarning) as record:
        line = inspect.currentframe().f_lineno + 1
        cls(I, H, init="identity")
    assert (record[0].filename, record[0].lineno) == (__file__, line)


@pytest.mark.parametrize("cls, kwargs", [(rnnkit.LSTM, {}), (rnnkit.LSTM, {"proj_size": 3}), (rnnkit.LSTMCell, {})],
                         ids=["lstm", "lstm_proj", "lstm_cell"])
@pytest.mark.parametrize("init", ["torch", "orthogonal"])
def test_forget_bias(cls, kwargs, init):
    """b_if + b_hf = forget_bias in every layer-direction; everything else is the same draw as without it."""
    torch.manual_seed(5)
    m = build(cls, init, forget_bias=1.5, **kwargs)
    torch.manual_seed(5)
    ref = build(cls, init, **kwargs)
    sums = forget_biases(m)
    assert len(sums) == (4 if cls is rnnkit.LSTM else 1)
    for total in sums:
        torch.testing.assert_close(total, torch.full((H,), 1.5))
    not_f = torch.ones(4 * H, dtype=torch.bool)
    not_f[H : 2 * H] = False
    for name, p in m.named_parameters():
        q = ref.get_parameter(name)
        if name.startswith("bias"):
            p, q = p[not_f], q[not_f]
        assert torch.equal(p, q), name
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    m.reset_parameters()  # reset applies it again
    for total in forget_biases(m):
        torch.testing.assert_close(total, torch.full((H,), 1.5))


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.LSTMCell])
def test_forget_bias_without_bias_is_an_error(cls, assert_error):
    """There is no bias to set (this was once silently ignored)."""
    assert_error(ValueError, lambda: cls(I, H, bias=False, forget_bias=1.0), f"rnnkit.{cls.__name__}", "forget_bias",
                 "bias=True")


TORCH_PAIRS = [
    (rnnkit.LSTM, nn.LSTM, {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
    (rnnkit.GRU, nn.GRU, {"num_layers": 2, "bidirectional": True}),
    (rnnkit.RNN, nn.RNN, {"num_layers": 2, "nonlinearity": "relu"}),
    (rnnkit.LSTMCell, nn.LSTMCell, {}), (rnnkit.GRUCell, nn.GRUCell, {}), (rnnkit.RNNCell, nn.RNNCell, {}),
]


DRAW_CASES = [(*pair, ln) for pair in TORCH_PAIRS for ln in (False, True)
              if not (ln and pair[0] in (rnnkit.RNN, rnnkit.RNNCell))]  # the vanilla RNN has no layer norm


@pytest.mark.parametrize("kit_cls, torch_cls, kwargs, layer_norm", DRAW_CASES,
                         ids=[f"{c.__name__}-ln={ln}" for c, _, _, ln in DRAW_CASES])
def test_torch_init_is_torch_nn_draw_for_draw(kit_cls, torch_cls, kwargs, layer_norm):
    """After the same seed, init="torch" gives torch.nn's very weights; layer-norm parameters take no
    draws, so adding them changes nothing else (gains start at 1, biases at 0)."""
    torch.manual_seed(3)
    kit = kit_cls(I, H, init="torch", layer_norm=layer_norm, **kwargs)
    torch.manual_seed(3)
    ref = torch_cls(I, H, **kwargs)
    ours = kit.state_dict()
    for name, value in ref.state_dict().items():
        assert torch.equal(ours.pop(name), value), name
    for name, value in ours.items():  # what is left: the layer-norm parameters
        assert name.startswith("ln_") and torch.equal(value, torch.full_like(value, "weight" in name)), name


def test_torch_init_statistics():
    """Uniform in ±1/√H: the range, a mean near 0 and the variance 1/(3H) of a uniform."""
    torch.manual_seed(0)  # a statistical check: one fixed draw, whatever ran before
    m = rnnkit.LSTM(64, 256, init="torch")
    bound = 1 / math.sqrt(256)
    for name, p in m.named_parameters():
        p = p.detach()
        assert p.abs().max() <= bound and p.abs().max() > 0.99 * bound, name
        assert abs(p.mean()) < 0.1 * bound, name
        assert abs(p.var() / (bound**2 / 3) - 1) < 0.1, name


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRUCell])
@pytest.mark.parametrize("bad", ["xavier", "Torch", None, 1])
def test_unknown_init(cls, bad, assert_error):
    assert_error(ValueError, lambda: cls(I, H, init=bad), f"rnnkit.{cls.__name__}", "init", repr(bad), "'torch'",
                 "'orthogonal'", "'identity'")


@pytest.mark.parametrize("cls", [rnnkit.GRU, rnnkit.RNN, rnnkit.GRUCell, rnnkit.RNNCell])
def test_forget_bias_needs_a_forget_gate(cls, assert_error):
    assert_error(ValueError, lambda: cls(I, H, forget_bias=1.0), f"rnnkit.{cls.__name__}", "forget_bias", "LSTM")


@pytest.mark.parametrize("bad", ["1.0", True, [1.0]], ids=repr)
def test_forget_bias_must_be_a_number(bad, assert_error):
    assert_error(TypeError, lambda: rnnkit.LSTM(I, H, forget_bias=bad), "rnnkit.LSTM", "forget_bias", repr(bad))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=repr)
def test_forget_bias_must_be_finite(bad, assert_error):
    assert_error(ValueError, lambda: rnnkit.LSTMCell(I, H, forget_bias=bad), "rnnkit.LSTMCell", "forget_bias",
                 "finite", repr(bad))


def test_cell_reset_parameters_reaches_reparametrised_weights_too():
    """The cells initialised ``named_parameters()`` by name: a reparametrised weight (``parametrizations.
    weight_hh.original1``, ``bias_ih_orig``) kept its value, or its uninitialised memory, or a KeyError."""
    from torch.nn.utils import parametrizations, prune

    c = rnnkit.LSTMCell(3, 4, init="orthogonal")
    parametrizations.weight_norm(c, "weight_hh")
    with torch.no_grad():
        c.parametrizations.weight_hh.original1.fill_(7.0)
    c.reset_parameters()
    for block in c.weight_hh.detach().split(4):
        torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=0)
    c = rnnkit.RNNCell(3, 4, nonlinearity="relu", init="identity", device="meta")
    parametrizations.weight_norm(c, "weight_hh")
    c.to_empty(device="cpu")
    c.reset_parameters()
    torch.testing.assert_close(c.weight_hh.detach(), torch.eye(4))
    c = rnnkit.LSTMCell(3, 4, forget_bias=1.0)
    prune.l1_unstructured(c, "bias_ih", amount=0.0)
    c.reset_parameters()
    assert c.bias_ih_orig[4:8].tolist() == [1.0] * 4
    c = rnnkit.GRUCell(3, 4, layer_norm=True)
    prune.l1_unstructured(c, "ln_ih_weight", amount=0.25)
    c.reset_parameters()
    assert c.ln_ih_weight_orig.tolist() == [1.0] * 12


def test_reset_parameters_reaches_weights_that_torch_utils_reparametrised():
    """``getattr(layer, "weight_hh_l0")`` of a parametrised, pruned or weight-normed layer is a computed
    tensor: initialising it in place changed nothing (a meta-device layer kept uninitialised memory)."""
    import torch.nn.utils.parametrize as P
    from torch.nn.utils import parametrizations, prune

    class Half(nn.Module):  # no right_inverse: its original is initialised as torch.nn does, uniform
        def forward(self, w):
            return 0.5 * w

    def fresh(**kw):
        return rnnkit.GRU(3, 4, **kw)

    m = fresh()
    P.register_parametrization(m, "weight_hh_l0", Half())
    with torch.no_grad():
        m.parametrizations.weight_hh_l0.original.fill_(7.0)
    m.reset_parameters()
    assert m.parametrizations.weight_hh_l0.original.abs().max() <= 0.5
    m = fresh(device="meta")  # the meta-device flow: reparametrise, materialise, initialise
    parametrizations.weight_norm(m, "weight_hh_l0")
    m.to_empty(device="cpu")
    m.reset_parameters()
    assert m.weight_hh_l0.abs().max() <= 0.5 and torch.isfinite(m(torch.randn(5, 2, 3))[0]).all()
    m = fresh(init="orthogonal")  # through right_inverse the effective weight gets the scheme's value
    parametrizations.weight_norm(m, "weight_hh_l0")
    m.reset_parameters()
    for block in m.weight_hh_l0.detach().split(4):
        torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=0)
    m = fresh()
    prune.l1_unstructured(m, "weight_hh_l0", amount=0.5)
    mask = m.weight_hh_l0_mask.clone()
    with torch.no_grad():
        m.weight_hh_l0_orig.fill_(7.0)
    m.reset_parameters()
    assert m.weight_hh_l0_orig.abs().max() <= 0.5 and torch.equal(m.weight_hh_l0_mask, mask)
    m = fresh()
    with pytest.warns(FutureWarning):
        torch.nn.utils.weight_norm(m, "weight_hh_l0")
    with torch.no_grad():
        m.weight_hh_l0_v.fill_(7.0)
    m.reset_parameters()
    m(torch.randn(5, 2, 3))  # (its pre-hook recomputes weight_hh_l0 from g and v)
    assert m.weight_hh_l0.abs().max() <= 0.5 and m.weight_hh_l0_v.abs().max() <= 0.5
