"""Gradient flow through time: the stepped pass equals the layer, the per-step gradients equal an
independent computation (autograd through the layer's own engine for ∂L/∂x_t and ∂L/∂y_t, a
hand-written BPTT for the tanh RNN), and the summary numbers mean what they say."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.diagnostics.gradients import GradientFlow, gradient_flow
from rnnkit.diagnostics.stepping import check_against_layer, step_layer

DT = torch.float64
LAYERS = {
    "rnn_tanh": lambda **kw: rnnkit.RNN(3, 5, nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: rnnkit.RNN(3, 5, nonlinearity="relu", **kw),
    "lstm": lambda **kw: rnnkit.LSTM(3, 5, **kw),
    "lstm_proj": lambda **kw: rnnkit.LSTM(3, 5, proj_size=2, **kw),
    "gru": lambda **kw: rnnkit.GRU(3, 5, **kw),
    "lstm_ln": lambda **kw: rnnkit.LSTM(3, 5, layer_norm=True, **kw),
    "gru_ln": lambda **kw: rnnkit.GRU(3, 5, layer_norm=True, **kw),
}
OPTIONS = list(itertools.product(LAYERS, [1, 2], [False, True], [False, True]))


def _layer(name, num_layers=1, bidirectional=False, batch_first=False, seed=0):
    torch.manual_seed(seed)
    return LAYERS[name](num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=DT,
                        engine="fused")


def _x(layer, T=7, B=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, 3, generator=g, dtype=DT)
    return x.transpose(0, 1) if layer.batch_first else x


def _weights_for(out):
    return torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=DT)


@pytest.mark.parametrize("name, num_layers, bidirectional, batch_first", OPTIONS)
def test_stepped_output_equals_layer_and_x_gradients_equal_autograd(name, num_layers, bidirectional, batch_first):
    layer = _layer(name, num_layers, bidirectional, batch_first)
    x = _x(layer)
    run = step_layer(layer, x)
    check_against_layer(layer, x, run)  # raises on any mismatch
    y, _ = layer(x)
    torch.testing.assert_close(run.output.transpose(0, 1) if batch_first else run.output, y)

    # ∂L/∂x_t through the layer's own (fused) engine, for a loss that weights every output differently
    def loss_fn(out):
        return (out * _weights_for(out)).sum() + (out ** 2).sum()

    flow = gradient_flow(layer, x, loss_fn)
    xr = x.detach().requires_grad_(True)
    (gx,) = torch.autograd.grad(loss_fn(layer(xr)[0]), [xr])
    gx = gx.transpose(0, 1) if batch_first else gx
    torch.testing.assert_close(flow.x, gx.flatten(1).norm(dim=1))
    D = 2 if bidirectional else 1
    assert flow.h.shape == (num_layers * D, x.shape[1] if batch_first else x.shape[0])
    assert (flow.c is not None) == name.startswith("lstm")
    assert not any(p.grad is not None for p in layer.parameters()), "gradient_flow must not touch .grad"


def test_last_state_gradient_is_the_output_gradient():
    layer = _layer("gru", num_layers=2)
    x = _x(layer)
    flow = gradient_flow(layer, x, lambda out: (out * _weights_for(out)).sum())
    # h_T of the top layer feeds nothing but y_T, so ∂L/∂h_T = ∂L/∂y_T, a row of the fixed weights
    y = layer(x)[0]
    assert flow.h[-1, -1].item() == pytest.approx(float(_weights_for(y)[-1].norm()), rel=1e-12)


def test_tanh_rnn_matches_hand_written_bptt():
    """δ_T = ∂L/∂y_T; δ_t = ∂L/∂y_t + W_hhᵀ ((1 − h_{t+1}²) ∗ δ_{t+1}) — written out, no autograd."""
    layer = _layer("rnn_tanh")
    x = _x(layer, T=12)
    y, _ = layer(x)
    y = y.detach()
    gy = _weights_for(y)  # ∂L/∂y_t for L = Σ y ∗ gy
    W = layer.weight_hh_l0.detach()
    T = y.shape[0]
    delta = [None] * T
    delta[-1] = gy[-1]
    for t in range(T - 2, -1, -1):
        delta[t] = gy[t] + ((1 - y[t + 1] ** 2) * delta[t + 1]) @ W
    expected = torch.stack([d.norm() for d in delta])
    flow = gradient_flow(layer, x, lambda out: (out * gy).sum())
    torch.testing.assert_close(flow.h[0], expected)


def test_works_on_torch_nn_layers():
    torch.manual_seed(0)
    layer = nn.LSTM(3, 4, num_layers=2, dtype=DT)
    x = torch.randn(6, 2, 3, dtype=DT)
    flow = gradient_flow(layer, x, lambda out: out[-1].sum())
    assert flow.h.shape == (2, 6) and flow.names == ["l0", "l1"]


@pytest.mark.parametrize("cls", [rnnkit.GRU, rnnkit.LSTM])
def test_zoneout_is_stepped_at_its_expectation(cls):
    """A layer with zoneout (which 'rnnkit train --zoneout' makes) was refused as not the plain cells' function:
    the stepped cells take its eval-mode expectation, as the layer in eval mode computes."""
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, zoneout=0.5, dtype=DT, **({"zoneout_cell": 0.2} if cls is rnnkit.LSTM else {}))
    x = torch.randn(5, 2, 3, dtype=DT)
    flow = gradient_flow(layer, x, lambda out: out.sum())
    assert torch.isfinite(flow.h).all()
    with torch.no_grad():
        torch.testing.assert_close(step_layer(layer, x).output, layer.eval()(x)[0])


def test_mismatch_is_reported():
    class Shifted(rnnkit.GRU):
        def forward(self, input, hx=None, **kw):
            y, h = super().forward(input, hx, **kw)
            return y + 1, h

    torch.manual_seed(0)
    layer = Shifted(3, 4, dtype=DT)
    with pytest.raises(ValueError, match="does not reproduce its output"):
        gradient_flow(layer, torch.randn(5, 2, 3, dtype=DT), lambda out: out.sum())
    flow = gradient_flow(layer, torch.randn(5, 2, 3, dtype=DT), lambda out: out.sum(), check=False)
    assert flow.h.shape == (1, 5)


def test_loss_must_be_scalar():
    layer = _layer("gru")
    with pytest.raises(ValueError, match="scalar"):
        gradient_flow(layer, _x(layer), lambda out: out.sum(0))


def _flow(norms, reverse=False):
    h = torch.tensor([norms], dtype=DT)
    return GradientFlow("rnn_tanh", ["l0"], h, None, torch.zeros(len(norms)), 0.0, [reverse])


def test_decay_rate_and_ratio():
    T = 20
    norms = [10 ** (-0.25 * (T - 1 - t)) for t in range(T)]  # a quarter of a decade lost per step back
    f = _flow(norms)
    assert f.decay_per_step() == pytest.approx(0.25)
    assert f.ratio_first_last() == pytest.approx(10 ** (-0.25 * (T - 1)))
    # backward direction: its processing order is reversed, so the same numbers read backwards decay too
    assert _flow(norms[::-1], reverse=True).decay_per_step() == pytest.approx(0.25)
    assert _flow([1.0] * T).decay_per_step() == pytest.approx(0.0)
    assert _flow([2.0 ** -t for t in range(T)]).decay_per_step() < 0  # growing back in time: exploding
    # exact zeros (underflow) are left out of the fit
    assert _flow([0.0, 0.0] + norms[2:]).decay_per_step() == pytest.approx(0.25)
    assert math.isinf(_flow([0.0, 0.0, 1.0]).decay_per_step())


def test_vanishing_pattern_on_the_adding_task():
    """At initialisation a tanh RNN loses orders of magnitude per step; an IRNN almost none."""
    from rnnkit.diagnostics.tasks import AddingModel, adding_batch

    decay = {}
    for cell in ("rnn", "irnn"):
        torch.manual_seed(0)
        m = AddingModel(cell, hidden_size=32, dtype=DT)
        x, y = adding_batch(8, 60, seed=0, dtype=DT)
        decay[cell] = gradient_flow(m.rnn, x, lambda out: ((m.readout(out) - y) ** 2).mean()).decay_per_step()
    assert decay["rnn"] > 0.1 and abs(decay["irnn"]) < 0.02


def test_summaries_of_a_bidirectional_layer_describe_its_forward_direction():
    """With a last-step loss, the reverse direction sees the loss only at its first step: its decay is
    meaningless, so the one-number summaries describe the top layer's forward direction."""
    import math

    from rnnkit import GRU
    from rnnkit.diagnostics import gradient_flow
    from rnnkit.diagnostics.monitor import last_step_loss

    torch.manual_seed(0)
    layer = GRU(3, 4, num_layers=2, bidirectional=True).double()
    flow = gradient_flow(layer, torch.randn(12, 2, 3, dtype=torch.float64), last_step_loss(layer))
    assert flow.reverse == [False, True, False, True] and flow.headline() == 2
    s = flow.summary()
    assert math.isfinite(s["decay_log10_per_step"]) and math.isfinite(s["ratio_first_last"])
    assert s["decay_log10_per_step"] == flow.decay_per_step(2) and s["grad_h_last"] == float(flow.h[2, -1])


def test_a_misfit_input_or_state_is_named_as_the_layer_names_it():
    """The stepped run failed inside the cells' products ("mat1 and mat2 shapes cannot be multiplied")."""
    from rnnkit.diagnostics import gate_saturation

    lstm = rnnkit.LSTM(8, 16, batch_first=True)
    with pytest.raises(ValueError, match="input has 5 features in its last dimension, expected input_size=8"):
        gradient_flow(lstm, torch.randn(2, 7, 5), lambda y: y[:, -1].sum())
    with pytest.raises(TypeError, match="input must have dtype torch.float32"):
        gate_saturation(lstm, torch.randn(2, 7, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"h_0 has shape \(1, 3, 16\), expected \(1, 2, 16\)"):
        step_layer(lstm, torch.randn(2, 7, 8), (torch.zeros(1, 3, 16), torch.zeros(1, 3, 16)))


def test_which_norms_a_summary_reads_is_checked():
    """Anything but "h" read the cell state (which="x" too), and "c" of a GRU failed on None."""
    f = _flow([1.0, 0.5, 0.25])
    for bad in ("x", "H"):
        with pytest.raises(ValueError, match=f"decay_per_step: which must be 'h' or 'c', got '{bad}'"):
            f.decay_per_step(which=bad)
    with pytest.raises(ValueError, match="ratio_first_last: which='c' needs an LSTM's cell state; a rnn_tanh layer"):
        f.ratio_first_last(which="c")


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_a_padded_batch_with_lengths_equals_each_row_alone(name, batch_first):
    """A bidirectional layer's reverse direction started inside the padding, and nothing caught it (the check
    ran the layer without its lengths): with ``lengths`` each row's gradients are its own, and a step's norm
    over the batch is the root of the sum of the alive rows' squares."""
    layer = _layer(name, num_layers=2, bidirectional=True, batch_first=batch_first)
    lengths = torch.tensor([7, 4, 2, 6])
    x = _x(layer)
    W = torch.randn(7, 4, 10, generator=torch.Generator().manual_seed(3), dtype=DT)  # (T, B, D·H)
    tm = (lambda t: t.transpose(0, 1)) if batch_first else (lambda t: t)  # to and from time-major

    def loss_of(rows):
        return lambda out: (tm(out) * W[:, rows][: tm(out).shape[0]]).sum()

    flow = gradient_flow(layer, x, loss_of(slice(None)), lengths=lengths)  # (check=True: against the layer)
    squares = torch.zeros_like(flow.h)
    c_squares = None if flow.c is None else torch.zeros_like(flow.c)
    for b, n in enumerate(lengths.tolist()):
        alone = gradient_flow(layer, tm(tm(x)[:n, b : b + 1]), loss_of(slice(b, b + 1)))
        squares[:, :n] += alone.h ** 2
        if c_squares is not None:  # (the cell state: h_t reads C_t as the cell made it)
            c_squares[:, :n] += alone.c ** 2
    torch.testing.assert_close(flow.h, squares.sqrt())
    if c_squares is not None:
        torch.testing.assert_close(flow.c, c_squares.sqrt())
    full = gradient_flow(layer, x, loss_of(slice(None)))  # all rows full length: lengths change nothing
    same = gradient_flow(layer, x, loss_of(slice(None)), lengths=torch.full((4,), 7))
    torch.testing.assert_close(same.h, full.h)
    if full.c is not None:
        torch.testing.assert_close(same.c, full.c)


def test_packed_input_and_lengths_for_a_torch_layer_are_named():
    layer = _layer("gru")
    packed = nn.utils.rnn.pack_padded_sequence(_x(layer), [7, 4, 2, 1])
    with pytest.raises(TypeError, match="gradient_flow: x is a PackedSequence; pass the padded batch and its lengths"):
        gradient_flow(layer, packed, lambda out: out.sum())
    with pytest.raises(TypeError, match="lengths= needs an rnnkit layer"):
        gradient_flow(nn.GRU(3, 5).double(), _x(layer), lambda out: out.sum(), lengths=[7, 4, 2, 1])
