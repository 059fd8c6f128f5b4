"""LinearChainCRF against brute force: on tiny cases every one of the K^T paths is scored by the
formula in the module docstring, written out again here as a plain Python sum; log Z must equal their
logsumexp and Viterbi must find their arg-max — with padding, per sequence length."""
from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.models.crf import LinearChainCRF

DT = torch.float64


def make_crf(num_tags: int, seed: int) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(num_tags).to(DT)
    with torch.no_grad():  # larger than the ±0.1 init, so paths are far apart and arg-max unique
        for p in crf.parameters():
            p.normal_()
    return crf


def path_score(crf: LinearChainCRF, emissions: torch.Tensor, path) -> torch.Tensor:
    """score(y) for one sequence, emissions (L, K), straight from the formula."""
    s = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    for t, y in enumerate(path):
        s = s + emissions[t, y]
        if t > 0:
            s = s + crf.transitions[path[t - 1], y]
    return s


def brute_force(crf, emissions, length):
    """(log Z, best path, best score) by enumerating all K^length paths."""
    K = crf.num_tags
    paths = list(itertools.product(range(K), repeat=length))
    scores = torch.stack([path_score(crf, emissions[:length], p) for p in paths])
    best = int(scores.argmax())
    return torch.logsumexp(scores, 0), list(paths[best]), scores[best]


@pytest.mark.parametrize("num_tags,steps", [(1, 3), (2, 1), (3, 4), (4, 3), (5, 2)])
def test_log_partition_and_viterbi_equal_enumeration(num_tags, steps):
    crf = make_crf(num_tags, seed=num_tags * 10 + steps)
    lengths = torch.tensor([steps] + [max(1, steps - k) for k in range(1, 4)])
    B = len(lengths)
    emissions = torch.randn(B, steps, num_tags, dtype=DT)
    log_z = crf.log_partition(emissions, lengths)
    tags, best_scores = crf.decode(emissions, lengths)
    assert tags.shape == (B, steps) and tags.dtype == torch.long
    for b in range(B):
        L = int(lengths[b])
        ref_z, ref_path, ref_best = brute_force(crf, emissions[b], L)
        torch.testing.assert_close(log_z[b], ref_z)
        assert tags[b, :L].tolist() == ref_path
        assert (tags[b, L:] == -1).all()
        torch.testing.assert_close(best_scores[b], ref_best)


def test_score_and_likelihood_of_given_paths():
    crf = make_crf(3, seed=1)
    lengths = torch.tensor([4, 2, 3])
    emissions = torch.randn(3, 4, 3, dtype=DT)
    tags = torch.tensor([[0, 2, 1, 1], [2, 2, 7, -5], [1, 0, 0, 99]])  # values past a length are ignored
    scores = crf.score(emissions, tags, lengths)
    nll = crf.neg_log_likelihood(emissions, tags, lengths)
    for b in range(3):
        L = int(lengths[b])
        ref = path_score(crf, emissions[b], tags[b, :L].tolist())
        torch.testing.assert_close(scores[b], ref)
        torch.testing.assert_close(nll[b], brute_force(crf, emissions[b], L)[0] - ref)


def test_probabilities_sum_to_one_and_gradients_match_float64_check():
    crf = make_crf(2, seed=3)
    emissions = torch.randn(1, 3, 2, dtype=DT, requires_grad=True)
    total = sum(torch.exp(-crf.neg_log_likelihood(emissions, torch.tensor([list(p)])))
                for p in itertools.product(range(2), repeat=3))
    torch.testing.assert_close(total, torch.ones(1, dtype=DT))
    # d log Z / d E[t, k] is the marginal p(y_t = k): autograd through the forward algorithm must agree
    assert torch.autograd.gradcheck(lambda e: crf.log_partition(e), (emissions,))


def test_padded_batch_equals_each_sequence_alone():
    crf = make_crf(4, seed=5)
    lengths = torch.tensor([5, 1, 3])
    emissions = torch.randn(3, 5, 4, dtype=DT)
    log_z = crf.log_partition(emissions, lengths)
    tags, _ = crf.decode(emissions, lengths)
    for b, L in enumerate(lengths.tolist()):
        alone = emissions[b : b + 1, :L]
        torch.testing.assert_close(log_z[b : b + 1], crf.log_partition(alone))
        assert tags[b, :L].tolist() == crf.decode(alone)[0][0].tolist()


def test_bad_input_is_named(assert_error):
    crf = LinearChainCRF(3)
    e = torch.randn(2, 4, 3)
    assert_error(ValueError, lambda: crf.log_partition(torch.randn(2, 4, 5)), "emissions", "3 features", "(2, 4, 5)")
    assert_error(ValueError, lambda: crf.score(e, torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]])), "tags", "[0, 3)", "3")
    assert_error(ValueError, lambda: crf.score(e, torch.zeros(2, 3, dtype=torch.long)), "tags", "(2, 4)", "(2, 3)")
    assert_error(TypeError, lambda: crf.score(e, torch.zeros(2, 4)), "tags", "integer")
    assert_error(ValueError, lambda: crf.decode(e, torch.tensor([4, 5])), "length 5")
    bad = e.clone()
    bad[1, 2, 0] = float("nan")
    assert_error(ValueError, lambda: crf.decode(bad), "emissions", "finite", "nan", "(1, 2, 0)")
    assert_error(ValueError, lambda: LinearChainCRF(0), "num_tags", "0")


def test_forbidden_transitions_leave_padded_sentences_finite():
    """A −inf transition (the usual way to forbid O → I-X) into the tag that stands in for padding: the padded
    sentence's likelihood and gradients equal the sentence's alone (masking by a product gave −inf ∗ 0 = NaN)."""
    crf = make_crf(3, seed=4)
    with torch.no_grad():
        crf.transitions[1, 0] = float("-inf")  # tag 1 → tag 0 forbidden
    E = torch.randn(2, 4, 3, dtype=DT, requires_grad=True)
    tags = torch.tensor([[2, 2, 1, 1], [2, 1, 0, 0]])  # the second ends in tag 1, then padding
    nll = crf.neg_log_likelihood(E, tags, torch.tensor([4, 2]))
    alone = crf.neg_log_likelihood(E[1:, :2], tags[1:, :2])
    torch.testing.assert_close(nll[1:], alone)
    nll.sum().backward()
    assert torch.isfinite(E.grad).all() and torch.isfinite(crf.transitions.grad[torch.isfinite(crf.transitions)]).all()


@pytest.mark.parametrize("how", ["forbidden", "only-after-a-tag-that-cannot-start"])
def test_an_unreachable_tag_leaves_the_gradients_those_of_the_crf_without_it(how):
    """A tag no path reaches makes one logsumexp of the forward algorithm all −inf, whose torch backward is NaN:
    the likelihood was right but every gradient NaN. They now equal the gradients of the CRF without that tag
    (and 0 for the tag), padded or not."""
    crf = make_crf(3, seed=0)
    with torch.no_grad():
        if how == "forbidden":
            crf.start_transitions[2] = float("-inf")
            crf.transitions[:, 2] = float("-inf")
        else:  # tag 2 cannot start and only tag 2 may precede itself: no path ever reaches it
            crf.start_transitions[2] = float("-inf")
            crf.transitions[0, 2] = crf.transitions[1, 2] = float("-inf")
    small = LinearChainCRF(2).to(DT)
    with torch.no_grad():
        small.transitions.copy_(crf.transitions[:2, :2])
        small.start_transitions.copy_(crf.start_transitions[:2])
        small.end_transitions.copy_(crf.end_transitions[:2])
    E = torch.randn(2, 4, 3, dtype=DT, requires_grad=True)
    E2 = E.detach()[:, :, :2].clone().requires_grad_()
    tags, lengths = torch.tensor([[0, 1, 0, 1], [1, 1, 0, 0]]), torch.tensor([4, 2])
    nll = crf.neg_log_likelihood(E, tags, lengths)
    nll2 = small.neg_log_likelihood(E2, tags, lengths)
    torch.testing.assert_close(nll, nll2)
    nll.sum().backward()
    nll2.sum().backward()
    torch.testing.assert_close(E.grad[:, :, :2], E2.grad)
    assert torch.all(E.grad[:, :, 2] == 0)
    torch.testing.assert_close(crf.transitions.grad[:2, :2], small.transitions.grad)
