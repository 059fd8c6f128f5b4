"""GradientMonitor: norms and clipping as rnnkit.clip computes them, explosion after k steps (one warning
per streak), non-finite at once, vanishing from a gradient-flow probe, non-finite losses stop."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnnkit import GRU
from rnnkit.clip import clip_grad_norm
from rnnkit.diagnostics import gradient_flow
from rnnkit.diagnostics.monitor import (GradientMonitor, GradientWarning, MonitorConfig, NonFiniteLossError,
                                        last_step_loss)


def _params_with_norm(norm: float) -> list[nn.Parameter]:
    p = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    p.grad = torch.tensor([norm, 0.0, 0.0, 0.0], dtype=torch.float64)
    return [p]


def _silent(config=None):
    events = []
    return GradientMonitor(config or MonitorConfig(), on_event=events.append), events


def test_exploding_needs_k_consecutive_steps_and_warns_once_per_streak():
    mon, events = _silent(MonitorConfig(explode_threshold=10.0, explode_patience=3))
    for norm in [20, 20, 1, 20, 20, 20, 20, 20, 1, 20, 20, 20]:
        mon.observe(_params_with_norm(norm))
    assert [(e.step, e.kind) for e in events] == [(6, "exploding"), (12, "exploding")]
    assert "above 10 for 3 consecutive steps" in events[0].message


def test_nonfinite_norm_is_reported_at_once():
    mon, events = _silent()
    mon.observe(_params_with_norm(float("inf")), step=41)
    assert events[0].kind == "nonfinite" and events[0].step == 41
    assert mon.summary()["nonfinite_steps"] == 1


def test_default_route_is_a_python_warning():
    mon = GradientMonitor(MonitorConfig(explode_threshold=1.0, explode_patience=1))
    with pytest.warns(GradientWarning, match="gradients exploding"):
        mon.observe(_params_with_norm(5.0))


def test_observe_clips_like_clip_grad_norm_and_counts_the_rate():
    mon, _ = _silent(MonitorConfig(max_norm=1.0))
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(3, 3)) for _ in range(2)]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn(3, 3) * 5
        q.grad = p.grad.clone()
    norm = mon.observe(a)
    expected = clip_grad_norm(b, 1.0)
    assert norm == pytest.approx(float(expected))
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
    mon.observe(_params_with_norm(0.5))
    s = mon.summary()
    assert s["clip_rate"] == pytest.approx(0.5) and s["step"] == 2
    assert "clipped 50%" in mon.log_line()
    mon.reset_window()
    assert mon.summary()["clip_rate"] == 0.0 and mon.summary()["step"] == 2


def test_vanishing_from_norms_and_from_a_probe():
    mon, events = _silent(MonitorConfig(vanish_ratio=1e-3))
    assert mon.check_flow([1e-5, 1e-2, 1.0]) == pytest.approx(1e-5)
    assert events[-1].kind == "vanishing"
    mon.check_flow([0.5, 1.0])
    assert len(events) == 1

    from rnnkit.diagnostics.tasks import AddingModel, adding_batch

    for cell, expect_warning in (("rnn", True), ("irnn", False)):
        torch.manual_seed(0)
        m = AddingModel(cell, hidden_size=16, dtype=torch.float64)
        x, y = adding_batch(4, 80, seed=0, dtype=torch.float64)
        mon, events = _silent(MonitorConfig(vanish_ratio=1e-6))
        flow = mon.probe(m.rnn, x, lambda out: ((m.readout(out) - y) ** 2).mean(), step=7)
        assert bool(events) == expect_warning, (cell, flow.ratio_first_last())
        assert "flow_ratio_first_last" in mon.summary()


def test_nonfinite_loss_stops_with_a_clear_message():
    mon, _ = _silent()
    mon.check_loss(torch.tensor(1.5))
    with pytest.raises(NonFiniteLossError, match="the loss is nan at step 12.*last good checkpoint"):
        mon.check_loss(torch.tensor(math.nan), step=12)


def test_bad_config():
    with pytest.raises(ValueError, match="explode_patience"):
        MonitorConfig(explode_patience=0)
    with pytest.raises(ValueError, match="vanish_ratio"):
        MonitorConfig(vanish_ratio=0)
    with pytest.raises(ValueError, match="max_norm"):
        MonitorConfig(max_norm=-1.0)


def test_probe_without_a_loss_reads_the_last_step_of_each_direction():
    # last_step_loss: ∂L/∂h_T = v, a unit vector, in every row, so ‖∂L/∂h_T‖ = √B at each direction's
    # last step (t = T forward, t = 1 reverse); the global RNG is not drawn from
    torch.manual_seed(0)
    layer = GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    mon, _ = _silent()
    rng = torch.get_rng_state()
    flow = mon.probe(layer, x, step=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert float(flow.h[2, -1]) == pytest.approx(2.0) and float(flow.h[3, 0]) == pytest.approx(2.0)
    assert flow.ratio_first_last() == pytest.approx(float(flow.h[2, 0]) / 2.0)  # the top forward direction
    assert mon.probe(layer, x).ratio_first_last() == flow.ratio_first_last()  # a fixed v
    torch.testing.assert_close(flow.h, gradient_flow(layer, x, last_step_loss(layer)).h)


def test_vanishing_advice_fits_the_layer():
    """A gated layer is not told to switch to an LSTM/GRU; a vanilla one is."""
    import warnings as _warnings

    from rnnkit.diagnostics import GradientMonitor

    for mode, expected in (("lstm", "already gated"), ("rnn_tanh", "Consider an LSTM/GRU")):
        monitor = GradientMonitor()
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always")
            monitor.check_flow([1e-12, 1.0], step=1, layer_mode=mode)
        assert any(expected in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_a_flow_check_is_recorded_at_its_own_step_and_advises_torch_layers_too():
    import warnings

    m = GradientMonitor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientWarning)
        m.check_flow([1e-9, 1.0], step=500)
        assert m.events[-1].step == 500
        torch.manual_seed(0)
        m.probe(nn.LSTM(3, 4), torch.randn(60, 2, 3) * 0.01)
    vanishing = [e for e in m.events if e.kind == "vanishing"]
    assert "already gated" in vanishing[-1].message  # torch.nn's "LSTM" is recognised as gated
