"""Metrics against independent implementations (scikit-learn, sacrebleu, hand-counted conlleval cases)."""
from __future__ import annotations

import math
import random

import pytest
import torch

from rnnkit.train import metrics as M
from rnnkit.train.schedules import learning_rate


def test_lm_units():
    assert M.perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert M.bits_per_token(math.log(2.0) * 3) == pytest.approx(3.0)
    # uniform counts → unigram bits = log2(V)
    assert M.unigram_bits([0, 1, 2, 3] * 5, [0, 1, 2, 3], 4) == pytest.approx(2.0)


def test_macro_f1_and_accuracy_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = random.Random(0)
    gold = [rng.choice("abcd") for _ in range(200)]
    pred = [g if rng.random() < 0.6 else rng.choice("abce") for g in gold]
    labels = sorted(set(gold) | set(pred))
    assert M.macro_f1(pred, gold) == pytest.approx(f1_score(gold, pred, average="macro", labels=labels))
    assert M.accuracy(pred, gold) == pytest.approx(accuracy_score(gold, pred))
    assert M.majority_accuracy(["x", "x", "y"], ["x", "y"]) == 0.5


@pytest.mark.parametrize("tags,spans", [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
    (["I-PER", "I-PER", "B-PER", "O"], {("PER", 0, 2), ("PER", 2, 3)}),      # IOB1: I- opens a chunk
    (["B-PER", "I-LOC", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 3)}),           # type change splits
    (["S-ORG", "B-PER", "E-PER", "O"], {("ORG", 0, 1), ("PER", 1, 3)}),      # BIOES
    (["O", "O"], set()),
])
def test_entity_spans_conll_convention(tags, spans):
    assert M.entity_spans(tags) == spans


def test_entity_f1():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["O", "B-PER"]]  # 1 right, 1 wrong type, 1 missed
    prf = M.entity_prf(pred, gold)
    assert prf["precision"] == pytest.approx(1 / 2) and prf["recall"] == pytest.approx(1 / 3)
    assert prf["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert M.entity_f1([["O"] * 4, ["O", "O"]], gold) == 0.0  # the all-O baseline
    with pytest.raises(ValueError, match="sentence 0 has 3 predicted tags for 4 gold tags"):
        M.entity_prf([["O"] * 3, ["O", "O"]], gold)


def test_forecast_metrics_against_naive():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    last = torch.tensor([0.0, 1.0, 2.0, 3.0])
    m = M.forecast_metrics(target + 0.5, target, last)
    assert m["mae"] == pytest.approx(0.5) and m["naive_mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(0.5) and m["mae_ratio"] == pytest.approx(0.5)


def test_bleu_and_exact_match():
    import sacrebleu

    hyp = ["the cat sat on the mat", "a dog ran"]
    ref = ["the cat sat on the mat", "the dog ran away"]
    assert M.bleu(hyp, ref) == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
    assert M.bleu(ref, ref) == pytest.approx(100.0)
    assert M.exact_match(hyp, ref) == 0.5
    # three-word captions have no 4-grams: BLEU-4 is 0 even for a perfect match, BLEU-3 is not
    caps = ["three one four", "one five nine"]
    assert M.bleu_order(caps) == 3 and M.bleu(caps, caps, 3) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="1 predictions for 2 references"):
        M.exact_match(hyp[:1], ref)


def test_schedules():
    assert learning_rate(1.0, 0, 0.0, schedule="cosine", min_lr_ratio=0.1) == pytest.approx(1.0)
    assert learning_rate(1.0, 99, 1.0, schedule="cosine", min_lr_ratio=0.1) == pytest.approx(0.1)
    assert learning_rate(1.0, 50, 0.5, schedule="linear", min_lr_ratio=0.0) == pytest.approx(0.5)
    assert learning_rate(1.0, 1, 0.0, warmup_steps=4) == pytest.approx(0.5)
    # between the ends, where cosine and linear differ: m + (1 − m)(1 + cos πp)/2
    assert learning_rate(1.0, 25, 0.25, schedule="cosine", min_lr_ratio=0.1) == pytest.approx(
        0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert learning_rate(2.0, 50, 0.5, schedule="cosine", min_lr_ratio=0.0) == pytest.approx(1.0)
    assert learning_rate(1.0, 75, 0.75, schedule="linear", min_lr_ratio=0.2) == pytest.approx(0.4)
    # warm-up multiplies the decayed value
    assert learning_rate(1.0, 0, 0.25, schedule="cosine", warmup_steps=2) == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 4)) / 2)
