"""Dropout between layers (``dropout=p``, torch's meaning: on the outputs of every layer but the last,
in training only).

How it is checked, and why:

- Same seed as torch.nn: rnnkit draws the between-layer masks with one ``F.dropout`` call per layer
  boundary on the padded (T, B, D·H) output — the same call, shape and order as torch's CPU stack
  (``apply_layer_stack`` in ATen's RNN.cpp), and the default options draw nothing else. So after the
  same ``torch.manual_seed``, a float64 rnnkit layer in training mode must equal torch.nn exactly,
  gradients included, for every engine. (Not for packed input or ``lengths=``: torch then drops on
  the packed (N, D·H) rows, a different draw.)
- The rate, seen from outside: a 2-layer ReLU RNN whose layer 1 is the identity (W_ih = I, W_hh = 0,
  no bias) and whose layer 0 outputs are all positive outputs exactly its layer-1 input, so the
  fraction of zeros in the output is the fraction dropped, and the survivors are the eval output
  scaled by 1/(1 − p). No hook into the engines is needed, so every engine is checked the same way.
"""
from __future__ import annotations

import pytest
import torch
from core_helpers import CELLS, DT, ENGINES, assert_all_close, grads_of, loss_of, make_pair, random, states_list

import rnnkit

T, B, I, H = 5, 3, 3, 5


def forward_backward(module, x_base, seed: int):
    """Outputs and every gradient (input, parameters) of one training-mode call after ``manual_seed``."""
    x = x_base.clone().requires_grad_()
    torch.manual_seed(seed)
    y, state = module(x)
    outs = [y, *states_list(state)]
    return outs, grads_of(loss_of(outs), [x] + list(module.parameters()))


@pytest.mark.parametrize("p", [0.4, 1.0])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell_name", CELLS)
def test_train_mode_matches_torch_with_the_same_seed(cell_name, engine, bidirectional, p):
    kit, ref = make_pair(CELLS[cell_name], I, H, engine=engine, num_layers=3, bidirectional=bidirectional, dropout=p)
    x = random(T, B, I, seed=1)
    with torch.random.fork_rng():
        out_kit, grad_kit = forward_backward(kit.train(), x, seed=2024)
        out_ref, grad_ref = forward_backward(ref.train(), x, seed=2024)
    assert_all_close(out_kit, out_ref, ["output", "h_n", "c_n"][: len(out_ref)])
    assert_all_close(grad_kit, grad_ref, ["input"] + [n for n, _ in ref.named_parameters()])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell_name", CELLS)
def test_train_mode_is_random_eval_mode_is_not(cell_name, engine):
    """Training: two calls differ from each other and from eval. Eval: the same every call, and equal
    to torch.nn in eval (dropout off)."""
    kit, ref = make_pair(CELLS[cell_name], I, H, engine=engine, num_layers=2, dropout=0.5)
    x = random(T, B, I, seed=3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        kit.train()
        y1, y2 = kit(x)[0], kit(x)[0]
        kit.eval()
        e1, s1 = kit(x)
        e2, s2 = kit(x)
    assert not torch.equal(y1, y2), "two training calls drew the same dropout mask"
    assert not torch.allclose(y1, e1) and not torch.allclose(y2, e1), "training output equals eval output"
    assert torch.equal(e1, e2) and all(torch.equal(a, b) for a, b in zip(states_list(s1), states_list(s2)))
    e_ref, s_ref = ref.eval()(x)
    expected = [e_ref, *states_list(s_ref)]
    assert_all_close([e1, *states_list(s1)], expected, ["output", "h_n", "c_n"][: len(expected)])


def identity_second_layer(engine: str, p: float, H: int = 10) -> rnnkit.RNN:
    """A 2-layer ReLU RNN whose output is exactly its (dropped-out) layer-1 input, all positive in eval."""
    m = rnnkit.RNN(4, H, num_layers=2, nonlinearity="relu", dropout=p, dtype=DT, engine=engine)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.rand(H, 4, generator=g, dtype=DT) + 0.1)  # positive in, positive out
        m.weight_hh_l0.copy_(torch.rand(H, H, generator=g, dtype=DT) * 0.1)
        m.bias_ih_l0.fill_(0.1)
        m.bias_hh_l0.zero_()
        m.weight_ih_l1.copy_(torch.eye(H, dtype=DT))
        m.weight_hh_l1.zero_()
        m.bias_ih_l1.zero_()
        m.bias_hh_l1.zero_()
    return m


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropped_fraction_is_p(engine, p):
    m = identity_second_layer(engine, p)
    x = torch.rand(40, 10, 4, generator=torch.Generator().manual_seed(6), dtype=DT)  # (T, B, I): 4,000 units
    y_eval = m.eval()(x)[0]
    assert (y_eval > 0).all()
    with torch.random.fork_rng():
        torch.manual_seed(7)
        y = m.train()(x)[0]
    dropped = y == 0
    # Binomial(4000, p): the standard deviation of the fraction is below 0.008; allow 5 of them.
    assert abs(dropped.double().mean().item() - p) < 0.04
    torch.testing.assert_close(y[~dropped], y_eval[~dropped] / (1 - p))


@pytest.mark.parametrize("engine", ENGINES)
def test_last_layer_output_is_not_dropped(engine):
    """torch's rule: no dropout after the last layer, so a 1-layer stack in training equals eval."""
    with pytest.warns(UserWarning, match="no effect"):
        m = rnnkit.GRU(I, H, dropout=0.5, dtype=DT, engine=engine)
    x = random(T, B, I, seed=8)
    torch.testing.assert_close(m.train()(x)[0], m.eval()(x)[0])


@pytest.mark.parametrize("engine", ENGINES)
def test_train_mode_keeps_zeros_past_lengths(engine):
    m = rnnkit.LSTM(I, H, num_layers=3, dropout=0.5, bidirectional=True, dtype=DT, engine=engine).train()
    lens = [5, 2, 4]
    y, _ = m(random(T, B, I, seed=9), lengths=lens)
    for b, L in enumerate(lens):
        assert not y[L:, b].any()


@pytest.mark.parametrize("kind", ["locked", "variational"])
def test_dropout_one_with_per_sequence_masks_drops_everything(kind):
    """dropout=1.0 is accepted for every dropout_kind; like the naive kind, it should zero layer 1's input."""
    m = rnnkit.GRU(I, H, num_layers=2, dropout=1.0, dropout_kind=kind, dtype=DT).train()
    naive = rnnkit.GRU(I, H, num_layers=2, dropout=1.0, dtype=DT).train()
    naive.load_state_dict(m.state_dict())
    x = random(T, B, I, seed=10)
    torch.testing.assert_close(m(x)[0], naive(x)[0])  # layer 1 reads zeros either way
