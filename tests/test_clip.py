"""rnnkit.clip against torch.nn.utils.clip_grad_norm_ / clip_grad_value_, in float64, for every norm
type, clipping and not clipping, with parameters lacking gradients; error messages; ClipStats."""
from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.clip import ClipStats, clip_grad_norm, clip_grad_value, grad_norm


def _model_with_grads(seed: int = 0, scale: float = 1.0, skip_one: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 11), nn.Tanh(), nn.Linear(11, 3)).double()
    for k, p in enumerate(model.parameters()):
        if skip_one and k == 1:
            continue  # a parameter without a gradient is skipped, as torch skips it
        p.grad = torch.randn_like(p) * scale
    return model


def _twin(model: nn.Module) -> nn.Module:
    """A deep copy with the gradients copied too (deepcopy leaves a Parameter's .grad behind)."""
    twin = copy.deepcopy(model)
    for p, q in zip(model.parameters(), twin.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    return twin


def _grads(model: nn.Module) -> list:
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "norm_type, max_norm, skip_one",
    list(itertools.product([0.5, 1.0, 2.0, 3.0, math.inf], [0.1, 1.0, 1e3], [False, True])),
)
def test_clip_grad_norm_matches_torch(norm_type, max_norm, skip_one):
    ours = _model_with_grads(skip_one=skip_one)
    ref = _twin(ours)
    n_ours = clip_grad_norm(ours.parameters(), max_norm, norm_type)
    n_ref = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm, norm_type)
    assert isinstance(n_ours, torch.Tensor) and n_ours.dim() == 0
    torch.testing.assert_close(n_ours, n_ref)
    for a, b in zip(_grads(ours), _grads(ref)):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf])
@pytest.mark.parametrize("clip_value", [0.05, 0.5, 100.0])
def test_clip_grad_value_matches_torch_and_reports_norm_before(norm_type, clip_value):
    ours = _model_with_grads(seed=1, skip_one=True)
    ref = _twin(ours)
    # the norm before clamping: the plain vector norm of all gradient entries, concatenated
    flat_before = torch.cat([p.grad.flatten() for p in ref.parameters() if p.grad is not None])
    norm = clip_grad_value(ours.parameters(), clip_value, norm_type)
    torch.nn.utils.clip_grad_value_(ref.parameters(), clip_value)
    torch.testing.assert_close(norm, torch.linalg.vector_norm(flat_before, norm_type))
    flat = torch.cat([p.grad.flatten() for p in ours.parameters() if p.grad is not None])
    assert flat.abs().max() <= clip_value
    for a, b in zip(_grads(ours), _grads(ref)):
        if a is not None:
            torch.testing.assert_close(a, b)


def test_accepts_single_tensor_module_and_named_pairs():
    p = torch.randn(5, dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    norm = clip_grad_norm(p, 1.0)
    assert float(norm) == pytest.approx(5.0)
    assert float(p.grad.norm()) == pytest.approx(1.0, abs=1e-6)
    model = _model_with_grads()
    ref = _twin(model)
    torch.testing.assert_close(clip_grad_norm(model, 0.5), torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5))
    assert float(clip_grad_norm(model.named_parameters(), 0.5)) == pytest.approx(0.5, rel=1e-5)


def test_no_gradients_gives_zero_norm():
    layer = nn.Linear(3, 2)
    assert float(clip_grad_norm(layer.parameters(), 1.0)) == 0.0
    assert float(clip_grad_value(layer.parameters(), 1.0)) == 0.0


def test_rnnkit_layer_after_backward_matches_torch():
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 5, num_layers=2, dtype=torch.float64)
    out, _ = lstm(torch.randn(9, 2, 3, dtype=torch.float64) * 10)
    (out ** 2).sum().backward()
    ref = _twin(lstm)
    torch.testing.assert_close(clip_grad_norm(lstm.parameters(), 0.1),
                               torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.1))
    for a, b in zip(lstm.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_nonfinite_error_names_the_parameter():
    model = _model_with_grads()
    model[2].weight.grad[0, 0] = float("nan")
    model[0].bias.grad[1] = float("inf")
    with pytest.raises(RuntimeError) as info:
        clip_grad_norm(model, 1.0, error_if_nonfinite=True)
    msg = str(info.value)
    assert "2.weight (1 nan, 0 inf of 33)" in msg and "0.bias (0 nan, 1 inf of 11)" in msg
    with pytest.raises(RuntimeError, match="param\\[2\\] \\(1 nan"):
        clip_grad_value(list(model.parameters()), 1.0, error_if_nonfinite=True)
    # without the flag: torch's behaviour, a nan norm returned
    ref = _twin(model)
    n = clip_grad_norm(model.parameters(), 1.0)
    n_ref = torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    assert math.isnan(float(n)) and math.isnan(float(n_ref))


def test_bad_arguments(assert_error):
    model = _model_with_grads()
    assert_error(ValueError, lambda: clip_grad_norm(model.parameters(), 0.0), "max_norm must be > 0", "0.0")
    assert_error(ValueError, lambda: clip_grad_norm(model.parameters(), 1.0, -1), "norm_type", "-1")
    assert_error(ValueError, lambda: clip_grad_value(model.parameters(), -2), "clip_value must be > 0")
    assert_error(TypeError, lambda: clip_grad_norm([1, 2], 1.0), "expected tensors", "int")
    assert_error(ValueError, lambda: ClipStats(max_norm=0), "max_norm must be > 0")


def test_clip_stats_counts_how_often_and_how_hard():
    stats = ClipStats(max_norm=2.0)
    for norm in [1.0, 4.0, 3.0, float("inf"), 0.5, 2.0]:  # (a norm of exactly max_norm is not clipped)
        stats.record(torch.tensor(norm))
    s = stats.summary()
    assert s["steps"] == 6 and s["clipped"] == 2 and s["nonfinite"] == 1
    assert s["clip_rate"] == pytest.approx(2 / 6)
    assert s["mean_ratio_when_clipped"] == pytest.approx((2.0 + 1.5) / 2)
    assert s["max_ratio"] == pytest.approx(2.0)
    assert s["mean_norm"] == pytest.approx((1 + 4 + 3 + 0.5 + 2) / 5)
    assert "clipped 2/6 steps (33%)" in str(stats) and "1 non-finite" in str(stats)
    stats.reset()
    assert stats.summary()["steps"] == 0 and stats.clip_rate == 0.0


def test_clip_stats_clip_clips_and_records():
    model = _model_with_grads(scale=10.0)
    ref = _twin(model)
    stats = ClipStats(max_norm=1.0)
    norm = stats.clip(model.parameters())
    torch.testing.assert_close(norm, torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0))
    assert stats.clipped == 1 and stats.last_norm == pytest.approx(float(norm))
    assert float(grad_norm(model)) == pytest.approx(1.0, rel=1e-5)


def test_exported_as_rnnkit_clip():
    assert rnnkit.clip.clip_grad_norm is clip_grad_norm


def test_half_precision_gradients_are_clipped_as_torch_clips_them():
    """The factor was cast to each gradient's dtype before the product: half gradients came out 1 ulp off."""
    torch.manual_seed(0)
    shapes_dtypes = [((50,), torch.float16), ((30,), torch.float32), ((20,), torch.bfloat16)]
    ours = [torch.nn.Parameter(torch.zeros(s, dtype=d)) for s, d in shapes_dtypes]
    theirs = [torch.nn.Parameter(torch.zeros(s, dtype=d)) for s, d in shapes_dtypes]
    for a, b in zip(ours, theirs):
        a.grad = (torch.randn(a.shape) * 10).to(a.dtype)
        b.grad = a.grad.clone()
    torch.testing.assert_close(clip_grad_norm(ours, 1.0), torch.nn.utils.clip_grad_norm_(theirs, 1.0))
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)
