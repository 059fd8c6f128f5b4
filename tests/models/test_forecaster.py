"""Forecaster: beats the last-value baseline on noisy sines (one step, autoregressive and direct
10-step forecasts); uses future covariates; the rollout agrees with the whole-sequence model; the
scaler is kept in the state_dict and makes forecasts follow the data's units; bad input is named."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from rnnkit.models import MODEL_TYPES
from rnnkit.models.forecaster import Forecaster

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def noisy_sines(n: int, steps: int, g: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    """(n, steps, 1): 5 + a·sin(ω t + φ) + noise, a ∈ [1, 2], ω ∈ [0.2, 0.4] rad per step, φ uniform."""
    t = torch.arange(steps, dtype=torch.float32)
    freq = 0.2 + 0.2 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    amp = 1 + torch.rand(n, 1, generator=g)
    return (5 + amp * torch.sin(freq * t + phase) + noise * torch.randn(n, steps, generator=g)).unsqueeze(2)


def mse(a, b) -> float:
    return ((a - b) ** 2).mean().item()


def test_beats_the_last_value_baseline_on_noisy_sines(fit):
    """Bars (noise variance 0.01; measured here about 0.02, 0.07 and 0.04): one-step MSE ≤ 0.3× the
    last-value baseline's (≈ 0.13); 10-step MSE, autoregressive and direct, ≤ 0.1× the baseline's (≈ 2.5)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, test = noisy_sines(2000, 60, g), noisy_sines(500, 70, g)
    model = Forecaster(hidden_size=32, horizon=10).fit_scaler(train)
    fit(model, (train,), steps=200)
    with torch.no_grad():
        one_step = model(test)  # predictions of test[:, 1:]
    assert mse(one_step[:, 30:], test[:, 31:]) <= 0.3 * mse(test[:, 30:-1], test[:, 31:])
    history, future = test[:, :60], test[:, 60:]
    baseline = mse(history[:, -1:].expand(-1, 10, -1), future)
    for method in ("autoregressive", "direct"):
        forecast = model.forecast(history, 10, method=method)
        assert forecast.shape == (500, 10, 1)
        assert mse(forecast, future) <= 0.1 * baseline, method


def test_uses_future_exogenous_covariates(fit):
    """y_t = 0.8 y_{t-1} + e_t with e ~ N(0, 1) known ahead: without e_{t+1} no forecast beats MSE 1;
    the model reads it with the step it predicts. Bar: one-step and 5-step MSE ≤ 0.1 (measured 0.003, 0.005)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)

    def series(n, steps):
        e = torch.randn(n, steps, 1, generator=g)
        y = torch.zeros(n, steps, 1)
        for t in range(1, steps):
            y[:, t] = 0.8 * y[:, t - 1] + e[:, t]
        return y + 3, e

    y, e = series(1000, 40)
    model = Forecaster(num_exogenous=1, hidden_size=32, cell="gru").fit_scaler(y, e)
    fit(model, (y, e), steps=200)
    y_test, e_test = series(300, 45)
    with torch.no_grad():
        assert mse(model(y_test[:, :40], e_test[:, :40]), y_test[:, 1:40]) <= 0.1
    assert mse(model.forecast(y_test[:, :40], 5, e_test), y_test[:, 40:]) <= 0.1


@pytest.mark.parametrize("cell,num_layers,num_exogenous", [("lstm", 2, 0), ("gru", 1, 2), ("rnn_tanh", 2, 1)])
def test_rollout_agrees_with_the_whole_sequence_model(cell, num_layers, num_exogenous):
    """Autoregressive forecasts (single-step kernel) fed back as data give the same one-step predictions
    from ``forward`` (whole-sequence engine); the direct head equals its formula, and the loss its windows."""
    torch.manual_seed(0)
    model = Forecaster(num_series=2, num_exogenous=num_exogenous, hidden_size=5, num_layers=num_layers, cell=cell,
                       horizon=3).to(DT).eval()
    with torch.no_grad():
        model.series_mean.copy_(torch.tensor([1.0, -2.0]))
        model.series_std.copy_(torch.tensor([2.0, 0.5]))
    history = torch.randn(3, 6, 2, dtype=DT)
    exo = torch.randn(3, 6 + 4, num_exogenous, dtype=DT) if num_exogenous else None
    ar = model.forecast(history, 4, exo)
    extended = torch.cat([history, ar], dim=1)  # (3, 10, 2)
    with torch.no_grad():
        one_step = model(extended, exo)  # predictions of steps 1 … 9
    torch.testing.assert_close(one_step[:, 5:], ar)

    # The loss: one-step MSE plus the direct head's windows, written out step by step.
    series = extended[:, :8]
    exo8 = exo[:, :8] if num_exogenous else None
    z = (series - model.series_mean) / model.series_std
    with torch.no_grad():
        o, _ = model.rnn(model._step_inputs(z[:, :-1], None if exo8 is None else
                                            (exo8 - model.exogenous_mean) / model.exogenous_std))
        direct = [model.direct_head(o[:, t]).view(3, 3, 2) for t in range(8 - 3)]
        expected = ((model.head(o) - z[:, 1:]) ** 2).mean() + torch.stack(
            [((direct[t] - z[:, t + 1 : t + 4]) ** 2).mean() for t in range(5)]).mean()
        torch.testing.assert_close(model.loss(series, exo8), expected)
        first = model.forecast(history, 3, exo[:, :9] if num_exogenous else None, method="direct")
        o, _ = model.rnn(model._step_inputs((history - model.series_mean) / model.series_std, None if exo is None else
                                            (exo - model.exogenous_mean) / model.exogenous_std))
    torch.testing.assert_close(first, model.direct_head(o[:, -1]).view(3, 3, 2) * model.series_std + model.series_mean)
    # every window at once: window j is what forecast() gives from the history up to step j
    windows = model.direct_forecasts(series, exo8)  # (3, 8 − 3, 3, 2)
    assert windows.shape == (3, 5, 3, 2)
    for j in (0, 2, 4):
        torch.testing.assert_close(windows[:, j], model.forecast(series[:, : j + 1], 3, None if exo8 is None else
                                                                 exo8[:, : j + 4], method="direct"))
    with pytest.raises(ValueError, match="needs at least 4 time steps, got 3"):
        model.direct_forecasts(series[:, :3], None if exo8 is None else exo8[:, :3])


def test_scaler_lives_in_the_state_dict_and_follows_the_units():
    torch.manual_seed(0)
    y = torch.randn(8, 12, 2, dtype=DT) * torch.tensor([3.0, 0.1], dtype=DT) + torch.tensor([10.0, -1.0], dtype=DT)
    model = Forecaster(num_series=2, hidden_size=4, horizon=2).to(DT).fit_scaler(y)
    torch.testing.assert_close(model.series_mean, y.mean((0, 1)))
    torch.testing.assert_close(model.series_std, y.reshape(-1, 2).std(0))
    state = model.state_dict()
    assert {"series_mean", "series_std", "exogenous_mean", "exogenous_std"} <= set(state)

    rebuilt = MODEL_TYPES["forecaster"].from_config(json.loads(json.dumps(dataclasses.asdict(model.config))))
    rebuilt.to(DT).load_state_dict(state)
    torch.testing.assert_close(rebuilt.forecast(y, 5), model.forecast(y, 5))
    # The same weights fitted to data in other units forecast in those units: affine equivariance.
    scaled = Forecaster.from_config(model.config).to(DT)
    scaled.load_state_dict(state)
    scaled.fit_scaler(1000 * y - 7)
    torch.testing.assert_close(scaled.forecast(1000 * y - 7, 5), 1000 * model.forecast(y, 5) - 7)
    torch.testing.assert_close(scaled.forecast(1000 * y - 7, 2, method="direct"),
                               1000 * model.forecast(y, 2, method="direct") - 7)
    # A constant channel keeps a unit scale instead of dividing by zero.
    flat = Forecaster(hidden_size=3).fit_scaler(torch.full((2, 5, 1), 4.0))
    assert flat.series_std.item() == 1.0 and flat.series_mean.item() == 4.0


def test_bad_input_is_named(assert_error):
    model = Forecaster(hidden_size=4, horizon=3)
    y = torch.randn(2, 6, 1)
    nan = y.clone()
    nan[1, 4, 0] = float("nan")
    assert_error(ValueError, lambda: model.loss(nan), "series", "finite", "nan", "(1, 4, 0)")
    assert_error(ValueError, lambda: model.forecast(y.masked_fill(y > 0, float("inf")), 2), "series", "finite", "inf")
    assert_error(ValueError, lambda: model.fit_scaler(nan), "series", "finite")
    assert_error(ValueError, lambda: model.loss(torch.randn(2, 6)), "series", "3-D", "(2, 6)")
    assert_error(ValueError, lambda: model.loss(torch.randn(2, 6, 2)), "series", "1 features", "(2, 6, 2)")
    assert_error(TypeError, lambda: model.loss(torch.ones(2, 6, 1, dtype=torch.long)), "series", "floating")
    assert_error(ValueError, lambda: model.loss(y[:, :3]), "horizon=3", "4 time steps", "got 3")
    assert_error(ValueError, lambda: model.forecast(y, 0), "steps", ">= 1", "0")
    assert_error(ValueError, lambda: model.forecast(y, 4, method="direct"), "horizon=3", "steps=4")
    assert_error(ValueError, lambda: model.forecast(y, 2, method="beam"), "method", "'beam'")
    assert_error(ValueError, lambda: model.forecast(y, 2, exogenous=torch.randn(2, 8, 1)), "exogenous",
                 "num_exogenous=0")
    exo_model = Forecaster(num_exogenous=2, hidden_size=4)
    assert_error(ValueError, lambda: exo_model.forecast(y, 2), "exogenous", "(2, 8, 2)", "required")
    assert_error(ValueError, lambda: exo_model.forecast(y, 2, torch.randn(2, 6, 2)), "exogenous", "(2, 8, 2)",
                 "(2, 6, 2)")
    bad_exo = torch.randn(2, 6, 2)
    bad_exo[0, 0, 1] = float("-inf")
    assert_error(ValueError, lambda: exo_model.loss(y, bad_exo), "exogenous", "finite", "-inf")
    assert_error(ValueError, lambda: Forecaster(horizon=-1), "horizon", ">= 0", "-1")


@pytest.mark.parametrize("update", ["p.data", "no_grad in place", "optimizer step"])
def test_forecast_follows_every_kind_of_weight_update(update):
    """``forecast`` runs a packed step kernel built from the weights; after any update it must use the new
    ones: the autoregressive forecast stays equal to one-step predictions of ``forward``."""
    torch.manual_seed(0)
    model = Forecaster(hidden_size=6, horizon=2).to(DT).eval()
    history = torch.randn(2, 8, 1, dtype=DT)
    model.forecast(history, 3)  # builds the kernel from the first weights
    if update == "p.data":
        for p in model.parameters():
            p.data.mul_(-1.5)
    elif update == "no_grad in place":
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.7)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        model.train()
        model.loss(torch.randn(4, 8, 1, dtype=DT)).backward()
        opt.step()
        model.eval()
    ar = model.forecast(history, 3)
    with torch.no_grad():
        one_step = model(torch.cat([history, ar], dim=1))
    torch.testing.assert_close(one_step[:, 7:], ar)
