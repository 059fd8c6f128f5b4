"""Decoding: beam search on hand-built log-probability tables, beam search against brute force, width 1
against greedy, batch against one sentence at a time, and the sampling filters."""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import pytest
import torch

from rnnkit.models.decoding import (
    Decoded, beam_search, decode, expand_rows, filter_log_probs, greedy, length_normalizer, sample, select_rows,
)

DT = torch.float64
EOS = 0


def table_step(tables: dict[tuple[int, ...], list[float]]):
    """A decoder whose state is the prefix so far (N, t): the next-token probabilities are looked up
    by prefix in ``tables`` (missing prefixes: uniform)."""

    def step(tokens, prefix):
        prefix = torch.cat([prefix, tokens.unsqueeze(1)], dim=1)
        rows = []
        for p in prefix.tolist():
            probs = tables.get(tuple(p[1:]))  # p[0] is the start token
            rows.append(probs if probs is not None else [1.0 / V] * V)
        return torch.tensor(rows, dtype=DT).log(), prefix

    V = len(next(iter(tables.values())))
    return step


def rnn_step(V: int = 5, H: int = 4, seed: int = 0, eos_bias: float = 0.0):
    """A small random recurrent decoder in float64: h' = tanh(E[token] + h W); log_softmax(h' U).
    The extra is a softmax over 3 fake source positions, to follow through the searches."""
    g = torch.Generator().manual_seed(seed)
    E, W, U = (torch.randn(*s, generator=g, dtype=DT) for s in ((V, H), (H, H), (H, V)))
    A = torch.randn(H, 3, generator=g, dtype=DT)
    bias = torch.zeros(V, dtype=DT)
    bias[EOS] = eos_bias

    def step(tokens, h):
        h = torch.tanh(E[tokens] + h @ W)
        return (h @ U * 2 + bias).log_softmax(1), h, (h @ A).softmax(1)

    return step, torch.randn(1, H, generator=g, dtype=DT)


def test_beam_finds_what_greedy_misses():
    # Greedy takes 1 (0.6) and then can only reach 0.6 · 0.5; beam keeps 2 (0.4) and finds 0.4 · 0.9.
    tables = {(): [0.0, 0.6, 0.4], (1,): [0.5, 0.5, 0.0], (2,): [0.9, 0.05, 0.05]}
    for k in (1, 2):
        tables.update({(1, k): [1.0, 0.0, 0.0], (2, k): [1.0, 0.0, 0.0]})
    step = table_step(tables)
    start, prefix = torch.tensor([7]), torch.zeros(1, 0, dtype=torch.long)
    g = greedy(step, start, prefix, max_length=5, eos_id=EOS)
    assert g.tokens.tolist() == [[1, 0]] and g.lengths.tolist() == [2]
    torch.testing.assert_close(g.scores, torch.tensor([math.log(0.6 * 0.5)], dtype=DT))
    b = beam_search(step, start, prefix, beam_width=2, max_length=5, eos_id=EOS)
    assert b.tokens.tolist() == [[2, 0]] and b.lengths.tolist() == [2]
    torch.testing.assert_close(b.scores, torch.tensor([math.log(0.4 * 0.9)], dtype=DT))


def test_length_penalty_prefers_the_longer_hypothesis():
    # Stop now: 0.3. Go on: 0.7 · 0.8 · 0.45 = 0.252 over 3 tokens (anything longer is below 0.11). The
    # plain sum prefers stopping, GNMT's normaliser with alpha = 1 the longer one:
    # log 0.3 / 1 = -1.20 < log 0.252 / (8/6) = -1.03.
    tables = {(): [0.3, 0.7, 0.0], (1,): [0.2, 0.0, 0.8], (1, 2): [0.45, 0.0, 0.55]}
    step = table_step(tables)
    start, prefix = torch.tensor([9]), torch.zeros(1, 0, dtype=torch.long)
    plain = beam_search(step, start, prefix, beam_width=3, max_length=6, eos_id=EOS)
    assert plain.tokens.tolist() == [[0]]
    normed = beam_search(step, start, prefix, beam_width=3, max_length=6, eos_id=EOS, length_penalty=1.0)
    assert normed.tokens.tolist() == [[1, 2, 0]]
    torch.testing.assert_close(normed.scores, torch.tensor([math.log(0.7 * 0.8 * 0.45)], dtype=DT))


def test_a_finished_hypothesis_is_never_lost():
    # [EOS] (0.25) finishes at step 0 among the two best candidates. At step 1 the beams "a a" and "a b"
    # (0.35 each) outrank it, and every continuation after that is poor: the search must still return
    # [EOS], the best hypothesis it completed (a beam that kept finished hypotheses in its K slots
    # dropped it and returned "a a a" at 0.119).
    A, B_ = 2, 1  # tokens: EOS = 0, a = 2, b = 1
    tables = {(): [0.25, 0.05, 0.70], (A,): [0.00001, 0.49999, 0.5]}
    for prefix in ((A, A), (A, B_)):
        tables[prefix] = [0.33, 0.33, 0.34]
    step = table_step(tables)
    out = beam_search(step, torch.tensor([9]), torch.zeros(1, 0, dtype=torch.long), beam_width=2, max_length=3,
                      eos_id=EOS, pad_id=EOS)
    assert out.tokens.tolist() == [[EOS]] and out.lengths.tolist() == [1]
    torch.testing.assert_close(out.scores, torch.tensor([math.log(0.25)], dtype=DT))


def reference_beam(step, start: int, h0, K: int, T: int, eos: int | None, alpha: float):
    """The documented search for one sentence, written out over Python lists: returns (tokens, sum)."""
    beams = [([], 0.0, h0)]  # (tokens, sum, state) of the unfinished hypotheses
    best, best_rank, count = None, -math.inf, 0
    for t in range(T):
        cands = []
        for toks, total, h in beams:
            lp, h2, _ = step(torch.tensor([toks[-1] if toks else start]), h)
            cands += [(total + float(lp[0, v]), toks + [v], h2) for v in range(lp.shape[1])]
        cands.sort(key=lambda c: -c[0])  # stable: equal sums keep beam-then-token order
        for total, toks, _ in cands[:K]:
            if toks[-1] == eos and total > -math.inf:
                count += 1
                rank = total / float(length_normalizer(torch.tensor(float(t + 1)), alpha))
                if rank > best_rank:
                    best, best_rank = (toks, total), rank
        beams = [(toks, total, h) for total, toks, h in cands if toks[-1] != eos][:K]
        if eos is not None:
            bound = beams[0][1] / float(length_normalizer(torch.tensor(float(T)), alpha))
            if count >= K or (best_rank > -math.inf and best_rank >= bound):
                return best
    toks, total, _ = beams[0]
    if best is None or total / float(length_normalizer(torch.tensor(float(T)), alpha)) > best_rank:
        return toks, total
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_beam_equals_the_documented_search(seed, K, alpha):
    """Against the rule written out over lists (``reference_beam``), on random decoders where EOS is
    likely enough that hypotheses finish, leave the beam and are outranked by the ones left."""
    V, T = 4, 6
    step, h0 = rnn_step(V=V, seed=seed, eos_bias=1.0)
    toks, total = reference_beam(step, V - 1, h0, K, T, EOS, alpha)
    out = beam_search(step, torch.tensor([V - 1]), h0, beam_width=K, max_length=T, eos_id=EOS, length_penalty=alpha)
    assert out.tokens[0, : out.lengths[0]].tolist() == toks
    assert out.scores.item() == pytest.approx(total, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_brute_force(seed, alpha):
    """With a beam as wide as the number of prefixes nothing is ever dropped, so beam search must
    return the best of all hypotheses (ending at EOS, or cut at max_length) under its own ranking."""
    V, T = 3, 4
    step, h0 = rnn_step(V=V, seed=seed, eos_bias=0.5)
    best, best_rank = None, -math.inf
    for n in range(1, T + 1):
        for seq in itertools.product(range(1, V), repeat=n - 1):
            for last in range(V) if n == T else [EOS]:
                toks = list(seq) + [last]
                if EOS in toks[:-1]:
                    continue
                h, total = h0, 0.0
                prev = torch.tensor([V - 1])
                for tok in toks:
                    lp, h, _ = step(prev, h)
                    total += float(lp[0, tok])
                    prev = torch.tensor([tok])
                rank = total / float(length_normalizer(torch.tensor(float(n)), alpha))
                if rank > best_rank:
                    best, best_rank, best_total = toks, rank, total
    out = beam_search(step, torch.tensor([V - 1]), h0, beam_width=V**T, max_length=T, eos_id=EOS,
                      length_penalty=alpha)
    assert out.tokens[0, : out.lengths[0]].tolist() == best
    assert out.scores.item() == pytest.approx(best_total, abs=1e-12)


@pytest.mark.parametrize("eos", [None, EOS])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_width_one_is_greedy(eos, alpha):
    step, h0 = rnn_step(V=6, seed=3, eos_bias=1.0)
    h0 = h0.expand(4, -1) + torch.randn(4, 4, generator=torch.Generator().manual_seed(9), dtype=DT)
    start = torch.tensor([1, 2, 3, 4])
    g = greedy(step, start, h0, max_length=8, eos_id=eos, pad_id=5)
    b = beam_search(step, start, h0, beam_width=1, max_length=8, eos_id=eos, pad_id=5, length_penalty=alpha)
    assert torch.equal(g.tokens, b.tokens) and torch.equal(g.lengths, b.lengths)
    torch.testing.assert_close(g.scores, b.scores)
    torch.testing.assert_close(g.extras, b.extras)
    if eos is not None:
        assert (g.lengths < 8).any(), "the test should see rows that end early"


def test_beam_on_a_batch_equals_one_sentence_at_a_time():
    step, h0 = rnn_step(V=7, seed=5, eos_bias=0.8)
    h0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    start = torch.tensor([1, 2, 3])
    batch = beam_search(step, start, h0, beam_width=4, max_length=9, eos_id=EOS, pad_id=6, length_penalty=0.7)
    for b in range(3):
        one = beam_search(step, start[b : b + 1], h0[b : b + 1], beam_width=4, max_length=9, eos_id=EOS, pad_id=6,
                          length_penalty=0.7)
        n = int(one.lengths[0])
        assert batch.tokens[b, :n].tolist() == one.tokens[0, :n].tolist()
        assert (batch.tokens[b, n:] == 6).all()
        torch.testing.assert_close(batch.scores[b], one.scores[0])
        torch.testing.assert_close(batch.extras[b, :n], one.extras[0, :n])


def test_beam_extras_follow_the_chosen_path():
    """The extra returned for token t is the one computed when that token was predicted."""
    step, h0 = rnn_step(V=5, seed=7)
    out = beam_search(step, torch.tensor([2]), h0, beam_width=3, max_length=5)
    h, prev = h0, torch.tensor([2])
    for t, tok in enumerate(out.tokens[0].tolist()):
        lp, h, extra = step(prev, h)
        torch.testing.assert_close(out.extras[0, t], extra[0])
        prev = torch.tensor([tok])


def test_greedy_stops_pads_and_scores():
    # Row 0 ends at step 2, row 1 never: tokens after EOS are pad, the score sums only real tokens.
    tables = {(): [0.1, 0.9, 0.0], (1,): [0.7, 0.3, 0.0]}
    step = table_step(tables)

    def two_rows(tokens, prefix):  # row 1 always prefers token 2
        lp, prefix = step(tokens, prefix)
        lp[1] = torch.tensor([0.2, 0.1, 0.7], dtype=DT).log()
        return lp, prefix

    out = greedy(two_rows, torch.tensor([5, 5]), torch.zeros(2, 0, dtype=torch.long), max_length=4, eos_id=EOS,
                 pad_id=9)
    assert out.tokens.tolist() == [[1, 0, 9, 9], [2, 2, 2, 2]]
    assert out.lengths.tolist() == [2, 4]
    torch.testing.assert_close(out.scores, torch.tensor([math.log(0.9 * 0.7), 4 * math.log(0.7)], dtype=DT))


def test_early_stop_when_every_row_is_done():
    step = table_step({(): [1.0, 0.0, 0.0]})
    calls = []

    def counted(tokens, state):
        calls.append(1)
        return step(tokens, state)

    out = greedy(counted, torch.tensor([1, 2]), torch.zeros(2, 0, dtype=torch.long), max_length=50, eos_id=EOS)
    assert out.tokens.shape == (2, 1) and len(calls) == 1


def test_filter_top_k_and_top_p():
    lp = torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=DT).log()
    kept = lambda logits: torch.isfinite(logits[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_log_probs(lp, top_k=2)) == [0, 1]
    tied = torch.tensor([[0.4, 0.3, 0.3]], dtype=DT).log()  # exactly k, also with a tie at the k-th value
    assert len(kept(filter_log_probs(tied, top_k=2))) == 2 and kept(filter_log_probs(tied, top_k=2))[0] == 0
    assert kept(filter_log_probs(lp, top_p=0.7)) == [0, 1]
    assert kept(filter_log_probs(lp, top_p=0.8 - 1e-9)) == [0, 1]
    assert kept(filter_log_probs(lp, top_p=0.81)) == [0, 1, 2]
    assert kept(filter_log_probs(lp, top_p=0.01)) == [0]  # the most likely token always survives
    assert kept(filter_log_probs(lp[:, [2, 0, 3, 1]], top_p=0.7)) == [1, 3]  # order does not matter
    torch.testing.assert_close(filter_log_probs(lp, temperature=2.0), lp / 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_temperatures_approach_greedy_and_uniform_without_nan(dtype):
    """A temperature near 0 leaves the best token alone, a huge one spreads the mass evenly over the tokens not
    excluded (−inf), at the edges of the dtype too (dividing gave 0 ∗ inf and −inf / inf, NaN, in the sampler)."""
    lp = torch.tensor([[0.5, 0.3, 0.2, 0.0]], dtype=dtype).log()  # the last token excluded
    for t in (1e-30, 1e-45, 1e-320):
        assert filter_log_probs(lp, temperature=t).softmax(-1).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    for t in (1e30, 1e39, 1e300):
        torch.testing.assert_close(filter_log_probs(lp, temperature=t).softmax(-1),
                                   torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]], dtype=dtype))


def test_sampling_follows_the_tempered_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=DT)
    n = 20000
    lp = probs.log().expand(n, -1)
    step = lambda tokens, state: (lp, state)  # noqa: E731
    for temperature in (0.5, 1.0, 2.0):
        out = sample(step, torch.zeros(n, dtype=torch.long), None, max_length=1, temperature=temperature,
                     generator=torch.Generator().manual_seed(0))
        freq = torch.bincount(out.tokens[:, 0], minlength=4).to(DT) / n
        expected = (probs.log() / temperature).softmax(0)
        torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
        torch.testing.assert_close(out.scores, lp[0][out.tokens[:, 0]])  # scored under the model, untempered


def test_sampling_is_reproducible_and_top_k_1_is_greedy():
    step, h0 = rnn_step(V=6, seed=11)
    start = torch.tensor([1, 2])
    h0 = h0.expand(2, -1)
    a = sample(step, start, h0, max_length=10, generator=torch.Generator().manual_seed(3))
    b = sample(step, start, h0, max_length=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens)
    g = greedy(step, start, h0, max_length=10)
    assert torch.equal(sample(step, start, h0, max_length=10, top_k=1).tokens, g.tokens)
    assert torch.equal(sample(step, start, h0, max_length=10, top_p=1e-6).tokens, g.tokens)
    assert torch.equal(decode(step, start, h0, method="beam", beam_width=1, max_length=10).tokens, g.tokens)


class Pair(NamedTuple):
    a: torch.Tensor
    b: object


def test_select_and_expand_rows_walk_nested_states():
    x = torch.arange(6).view(3, 2)
    tree = {"h": (x, [x + 10, None]), "p": Pair(x * 2, None)}
    e = expand_rows(tree, 2)
    assert e["h"][0].tolist() == [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]]
    assert isinstance(e["p"], Pair) and e["p"].b is None and e["h"][1][1] is None
    s = select_rows(tree, torch.tensor([2, 0]))
    assert s["h"][1][0].tolist() == [[14, 15], [10, 11]] and s["p"].a.tolist() == [[8, 10], [0, 2]]
    with pytest.raises(TypeError, match="state must hold Tensors"):
        select_rows({"h": "oops"}, torch.tensor([0]))


def test_bad_arguments_are_named(assert_error):
    step, h0 = rnn_step(V=4)
    start = torch.tensor([1])
    assert_error(ValueError, lambda: sample(step, start, h0, max_length=3, temperature=0), "temperature", "got 0")
    assert_error(ValueError, lambda: sample(step, start, h0, max_length=3, top_k=0), "top_k", ">= 1", "got 0")
    assert_error(TypeError, lambda: sample(step, start, h0, max_length=3, top_k=2.5), "top_k", "2.5")
    assert_error(ValueError, lambda: sample(step, start, h0, max_length=3, top_p=1.5), "top_p", "(0, 1]", "1.5")
    assert_error(ValueError, lambda: greedy(step, start, h0, max_length=0), "max_length", ">= 1", "got 0")
    assert_error(ValueError, lambda: beam_search(step, start, h0, beam_width=0, max_length=3), "beam_width", "got 0")
    assert_error(ValueError, lambda: beam_search(step, start, h0, beam_width=2, max_length=3, length_penalty=-1),
                 "length_penalty", "-1")
    assert_error(ValueError, lambda: greedy(step, torch.tensor([1.0]), h0, max_length=3), "start", "torch.float32")
    assert_error(TypeError, lambda: greedy(step, [1], h0, max_length=3), "start", "list")
    assert_error(ValueError, lambda: greedy(lambda t, s: (torch.zeros(3, 4), s), start, h0, max_length=3),
                 "log_probs of shape (N=1, V)", "(3, 4)")
    assert_error(TypeError, lambda: greedy(lambda t, s: torch.zeros(1, 4), start, h0, max_length=3),
                 "(log_probs, state)", "Tensor")
    assert_error(ValueError, lambda: decode(step, start, h0, method="viterbi", max_length=3), "method", "viterbi")
    assert isinstance(decode(step, start, h0, method="sample", max_length=2), Decoded)
