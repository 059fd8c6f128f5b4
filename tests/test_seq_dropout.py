"""Dropout for sequences: the ``dropout_kind`` of the masks between layers, the variational recurrent
mask, and the ``LockedDropout`` / ``EmbeddingDropout`` modules.

How the masks are seen from outside, with no hook into the engines:

- Between layers: a 2-layer ReLU RNN whose layers both copy their input (W_ih = I, W_hh = 0, no bias)
  outputs exactly its input times the mask between the layers. With an input of ones the output *is*
  the mask: one row per step, so a per-sequence ("locked", "variational") mask is the same at every
  step and a "naive" one is not.
- Recurrent: a 1-layer ReLU RNN with W_ih = 0, W_hh = I, no bias and h_0 = 1 computes
  h_t = relu(m ∗ h_{t-1}) = m^t, so a mask fixed per sequence gives the same zeros at every step and
  survivors equal to (1/(1 − q))^t.

The masks the stack hands to the engine are also inspected directly (shapes, values, independence).
"""
from __future__ import annotations

import pytest
import torch
from core_helpers import DT, random
from torch import nn

import rnnkit
from rnnkit.engine import dispatch

PER_SEQUENCE = {"locked": {}, "variational": {"recurrent_dropout": 0.3}}


def copy_stack(cells: int, engine: str, p: float, **options):
    """2-layer ReLU RNN that outputs (dropped) copies of its positive input."""
    m = rnnkit.RNN(cells, cells, num_layers=2, nonlinearity="relu", bias=False, dropout=p, dtype=DT, engine=engine,
                   **options)
    with torch.no_grad():
        for layer in (0, 1):
            getattr(m, f"weight_ih_l{layer}").copy_(torch.eye(cells, dtype=DT))
            getattr(m, f"weight_hh_l{layer}").zero_()
    return m


def between_layer_masks(engine: str, p: float, steps=6, batch=20, cells=50, seed=0, **options):
    m = copy_stack(cells, engine, p, **options).train()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return m(torch.ones(steps, batch, cells, dtype=DT))[0]  # (T, B, H): the mask itself


@pytest.mark.parametrize("engine", ["reference", "fused"])
@pytest.mark.parametrize("kind", list(PER_SEQUENCE))
def test_per_sequence_mask_is_the_same_at_every_step(kind, engine):
    p = 0.4
    y = between_layer_masks(engine, p, dropout_kind=kind, **PER_SEQUENCE[kind])
    assert torch.equal(y, y[:1].expand_as(y))
    assert set(y.unique().tolist()) == {0.0, 1 / (1 - p)}
    assert abs((y[0] == 0).double().mean().item() - p) < 0.05  # 1,000 units: σ ≈ 0.016
    assert not torch.equal(y[0, 0], y[0, 1])  # but each sequence has its own


@pytest.mark.parametrize("engine", ["reference", "fused", "native"])
def test_naive_mask_is_new_at_every_step(engine):
    p = 0.4
    y = between_layer_masks(engine, p, dropout_kind="naive")
    assert set(y.unique().tolist()) == {0.0, 1 / (1 - p)}
    for t in range(1, y.shape[0]):
        assert not torch.equal(y[t], y[t - 1])
        assert abs((y[t] == 0).double().mean().item() - p) < 0.05


@pytest.mark.parametrize("kind", list(PER_SEQUENCE))
def test_per_sequence_mask_keeps_zeros_past_lengths(kind):
    """Padding steps stay zero: the mask scales the outputs, it never fills them in."""
    m = rnnkit.GRU(4, 5, num_layers=3, dropout=0.3, bidirectional=True, dtype=DT, dropout_kind=kind,
                   **PER_SEQUENCE[kind]).train()
    lengths = [6, 2, 4]
    y, _ = m(random(6, 3, 4, seed=4), lengths=lengths)
    for b, L in enumerate(lengths):
        assert not y[L:, b].any()


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_recurrent_mask_is_the_same_at_every_step(engine):
    q, steps, batch, cells = 0.3, 5, 20, 50
    m = rnnkit.RNN(cells, cells, nonlinearity="relu", bias=False, dtype=DT, engine=engine, recurrent_dropout=q)
    with torch.no_grad():
        m.weight_ih_l0.zero_()
        m.weight_hh_l0.copy_(torch.eye(cells, dtype=DT))
    h0 = torch.ones(1, batch, cells, dtype=DT)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        y, _ = m.train()(torch.zeros(steps, batch, cells, dtype=DT), h0)
    dropped = y[0] == 0
    assert abs(dropped.double().mean().item() - q) < 0.05
    for t in range(steps):
        assert torch.equal(y[t] == 0, dropped)  # a mask redrawn per step would kill more units each step
        torch.testing.assert_close(y[t][~dropped], torch.full_like(y[t][~dropped], (1 / (1 - q)) ** (t + 1)))
    y_eval, _ = m.eval()(torch.zeros(steps, batch, cells, dtype=DT), h0)
    assert torch.equal(y_eval, torch.ones_like(y_eval))  # eval: no recurrent dropout


def captured_noise(monkeypatch, module, x, **kwargs):
    """The ``Noise`` the stack hands to the fused engine for each layer-direction, in call order."""
    seen = []
    real = dispatch._LAYER_FNS["fused"]

    def spy(mode, inp, state, w, lengths, reverse, noise):
        seen.append(noise)
        return real(mode, inp, state, w, lengths, reverse, noise=noise)

    monkeypatch.setitem(dispatch._LAYER_FNS, "fused", spy)
    module(x, **kwargs)
    return seen


def test_masks_handed_to_the_engine(monkeypatch):
    """Training: one recurrent mask (B, H_out) per layer-direction, scaled by 1/(1 − q); zoneout keeps
    (T, B, H_out) and (T, B, H) of 0/1; all independent. Eval: no recurrent mask, keeps = the probabilities."""
    q, p_h, p_c, P, Hs = 0.5, 0.3, 0.6, 3, 5
    m = rnnkit.LSTM(4, Hs, num_layers=2, bidirectional=True, proj_size=P, dtype=DT, engine="fused",
                    recurrent_dropout=q, zoneout=p_h, zoneout_cell=p_c).train()
    x = random(7, 6, 4, seed=2)
    noises = captured_noise(monkeypatch, m, x)
    assert len(noises) == 4
    for n in noises:
        assert n.recurrent.shape == (6, P) and set(n.recurrent.unique().tolist()) <= {0.0, 1 / (1 - q)}
        assert n.zone_h.shape == (7, 6, P) and n.zone_c.shape == (7, 6, Hs)
        assert set(n.zone_h.unique().tolist()) == set(n.zone_c.unique().tolist()) == {0.0, 1.0}
    masks = [n.recurrent for n in noises]
    assert all(not torch.equal(a, b) for k, a in enumerate(masks) for b in masks[k + 1 :])
    assert not torch.equal(noises[0].zone_h[0], noises[0].zone_h[1])  # zoneout: new draw every step
    for n in captured_noise(monkeypatch, m.eval(), x):
        assert n.recurrent is None and n.zone_h == p_h and n.zone_c == p_c


# -- LockedDropout ------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_shares_the_mask_across_time(batch_first):
    torch.manual_seed(0)  # a statistical check: one fixed draw, whatever ran before
    p, steps, batch, feats = 0.25, 7, 30, 40
    shape = (batch, steps, feats) if batch_first else (steps, batch, feats)
    x = torch.ones(*shape, dtype=DT, requires_grad=True)
    drop = rnnkit.LockedDropout(p, batch_first=batch_first).train()
    mask = drop(x)  # the input is ones: the output is the mask, 0 or 1/(1 − p)
    time_dim = 1 if batch_first else 0
    assert torch.equal(mask, mask.select(time_dim, 0).unsqueeze(time_dim).expand_as(mask))
    assert set(mask.unique().tolist()) == {0.0, 1 / (1 - p)}
    assert abs(mask.eq(0).double().mean().item() - p) < 0.05  # 1,200 units per step: σ ≈ 0.013
    batch_dim = 0 if batch_first else 1
    assert not torch.equal(mask.select(batch_dim, 0), mask.select(batch_dim, 1))
    (g,) = torch.autograd.grad(mask.sum(), x)
    torch.testing.assert_close(g, mask.detach())  # the gradient is the same mask


def test_locked_dropout_eval_and_zero_are_identity():
    x = random(5, 3, 4, seed=3)
    assert torch.equal(rnnkit.LockedDropout(0.5).eval()(x), x)
    assert torch.equal(rnnkit.LockedDropout(0.0).train()(x), x)
    torch.manual_seed(0)
    a = rnnkit.LockedDropout(0.5)(x)
    torch.manual_seed(0)
    assert torch.equal(rnnkit.LockedDropout(0.5)(x), a)  # the mask comes from torch's RNG


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, True, "0.5"], ids=repr)
@pytest.mark.parametrize("make", [lambda p: rnnkit.LockedDropout(p),
                                  lambda p: rnnkit.EmbeddingDropout(nn.Embedding(5, 2), p)],
                         ids=["LockedDropout", "EmbeddingDropout"])
def test_dropout_modules_reject_bad_p(make, bad, assert_error):
    assert_error(ValueError, lambda: make(bad), "rnnkit.", "p must be", "[0, 1)", repr(bad))


def test_locked_dropout_rejects_non_sequence_input(assert_error):
    assert_error(ValueError, lambda: rnnkit.LockedDropout(0.5).train()(torch.ones(3, 4)), "rnnkit.LockedDropout",
                 "3-D", "(3, 4)")


# -- EmbeddingDropout ----------------------------------------------------------------------------------
def test_embedding_dropout_drops_whole_words():
    """Every occurrence of a dropped word is the zero vector; every kept word is its row × 1/(1 − p);
    the gradient reaches only the kept rows, scaled the same way."""
    torch.manual_seed(0)  # a statistical check: one fixed draw, whatever ran before
    p, vocab, dim = 0.3, 400, 3
    emb = nn.Embedding(vocab, dim, dtype=DT)
    drop = rnnkit.EmbeddingDropout(emb, p).train()
    ids = torch.cat([torch.arange(vocab), torch.randint(0, vocab, (600,))]).view(-1, 25)  # every word, repeats
    out = drop(ids)  # (40, 25, dim)
    rows = out.reshape(-1, dim)
    flat = ids.reshape(-1)
    kept = torch.zeros(vocab, dtype=torch.bool)
    kept[flat[rows.ne(0).any(1)]] = True
    expected = torch.where(kept[flat].unsqueeze(1), emb.weight[flat] / (1 - p), torch.zeros_like(rows))
    torch.testing.assert_close(rows, expected)
    assert abs(1 - kept.double().mean().item() - p) < 0.08  # 400 words: σ ≈ 0.023
    out.sum().backward()
    counts = torch.bincount(flat, minlength=vocab).to(DT)
    expected_grad = (kept.to(DT) * counts / (1 - p)).unsqueeze(1).expand(vocab, dim)
    torch.testing.assert_close(emb.weight.grad, expected_grad)


def test_embedding_dropout_eval_is_the_embedding_and_keeps_padding():
    emb = nn.Embedding(10, 4, padding_idx=0, dtype=DT)
    drop = rnnkit.EmbeddingDropout(emb, 0.5)
    ids = torch.tensor([[0, 3, 3], [7, 0, 9]])
    assert torch.equal(drop.eval()(ids), emb(ids))
    drop.train()(ids).sum().backward()
    assert not emb.weight.grad[0].any()  # the padding row never learns
    assert not drop(ids)[ids == 0].any()


def test_embedding_dropout_needs_an_embedding(assert_error):
    assert_error(TypeError, lambda: rnnkit.EmbeddingDropout(nn.Linear(3, 3), 0.1), "rnnkit.EmbeddingDropout",
                 "nn.Embedding", "Linear")


def test_embedding_dropout_scales_after_max_norm():
    """With ``max_norm`` the kept rows should still be the eval rows × 1/(1 − p)."""
    p = 0.5
    emb = nn.Embedding(50, 4, max_norm=1.0, dtype=DT)
    with torch.no_grad():
        emb.weight.mul_(10)  # every row longer than max_norm
    drop = rnnkit.EmbeddingDropout(emb, p)
    ids = torch.arange(50)
    y_eval = drop.eval()(ids)
    y = drop.train()(ids)
    kept = y.ne(0).any(1)
    assert kept.any()
    torch.testing.assert_close(y[kept], y_eval[kept] / (1 - p))
