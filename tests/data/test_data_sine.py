"""The built-in `sine` dataset holds the numbers its description/README/docstring claim:
period 50, amplitude 1 (sin), Gaussian noise sd 0.1, 2,000 steps, last 20 % validation, seeded."""
import math

import numpy as np
import torch

from rnnkit.data import BUILTIN_DATASETS, load_builtin
from rnnkit.data.builtin import noisy_sine
from rnnkit.data.readers import Series


def _full():
    d = load_builtin("sine")
    return d, torch.cat([d["train"].values, d["valid"].values]).double()[:, 0]


def test_length_and_split_tail_20_percent():
    d, full = _full()
    assert isinstance(d["train"], Series) and isinstance(d["valid"], Series)
    assert d["train"].columns == ["sine"] and d["valid"].columns == ["sine"]
    assert len(d["train"].values) == 1600 and len(d["valid"].values) == 400  # 2,000 steps, last 20 %
    assert d["train"].values.shape == (1600, 1) and d["train"].values.dtype == torch.float32
    # the validation split is the future: it continues the training series in time
    assert torch.equal(torch.cat([d["train"].values, d["valid"].values]), noisy_sine().values)


def test_period_amplitude_and_noise():
    _, full = _full()
    t = torch.arange(2000, dtype=torch.float64)
    resid = full - torch.sin(2 * math.pi * t / 50)
    # noise: mean ~0, sd ~0.1 (2,000 normal draws: sd of the sd estimate ~0.0016)
    assert abs(float(resid.mean())) < 0.01
    assert abs(float(resid.std()) - 0.1) < 0.006
    # normal, not uniform: ~68 % within 1 sd, ~95 % within 2 sd
    assert 0.64 < float((resid.abs() < 0.1).double().mean()) < 0.72
    assert 0.93 < float((resid.abs() < 0.2).double().mean()) < 0.97
    # period from the data alone: the spectrum peaks at 2000/50 = 40 cycles
    spec = np.abs(np.fft.rfft(full.numpy()))
    assert int(spec[1:].argmax()) + 1 == 40
    # amplitude from a least-squares fit of a sin + b cos at period 50
    X = torch.stack([torch.sin(2 * math.pi * t / 50), torch.cos(2 * math.pi * t / 50)], 1)
    coef = torch.linalg.lstsq(X, full.unsqueeze(1)).solution[:, 0]
    assert abs(float(coef.norm()) - 1.0) < 0.01 and abs(float(coef[1])) < 0.01  # phase 0: pure sine


def test_seeded_and_described():
    assert torch.equal(load_builtin("sine")["train"].values, load_builtin("sine", seed=0)["train"].values)
    assert not torch.equal(load_builtin("sine", seed=1)["train"].values, load_builtin("sine")["train"].values)
    desc = BUILTIN_DATASETS["sine"].description
    assert "period 50" in desc and "sd 0.1" in desc and "2,000 steps" in desc


def test_train_forecast_builtin_sine_gets_the_same_split():
    """`rnnkit train forecast --data builtin:sine` reads exactly load_builtin('sine') (its own 20 % tail)."""
    from rnnkit.train.tasks.forecast import ForecastData, ForecastTask

    train, valid, how = ForecastTask.load_splits(["builtin:sine"], None, ForecastData(), seed=5, valid_fraction=0.2)
    d = load_builtin("sine")
    assert torch.equal(train.values, d["train"].values) and torch.equal(valid.values, d["valid"].values)
    assert how.startswith("built-in sine")


def test_naive_baseline_mae_matches_readme_order():
    """README: 'sine: MAE 0.095 vs 0.138' — the last-value baseline on the validation split is ~0.138."""
    d = load_builtin("sine")
    v = d["valid"].values[:, 0].double()
    naive = float((v[1:] - v[:-1]).abs().mean())
    assert abs(naive - 0.138) < 0.01
