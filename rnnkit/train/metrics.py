"""Evaluation metrics for every task, as plain functions of predictions and references.

Language modelling (from the mean negative log-likelihood per token, in nats):
    perplexity = exp(nll)            bits per character = nll / ln 2
Classification: accuracy and macro F1 (the unweighted mean of per-class F1 over every class seen in
the references or the predictions, so a class the model never predicts counts as F1 = 0).
Tagging: entity-level precision/recall/F1 in the CoNLL convention (conlleval): an entity is a
maximal chunk (type, start, end); it counts only if both boundaries and the type match exactly.
Forecasting: MAE and RMSE, next to the naive last-value forecast ŷ_t = y_{t-1}.
Translation and captioning: corpus BLEU (sacrebleu, 13a tokenisation) and exact match.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

import torch

LN2 = math.log(2.0)


# --- language modelling ---------------------------------------------------------------------

def perplexity(mean_nll: float) -> float:
    """exp(mean NLL in nats); ``inf`` instead of an OverflowError for a hopeless model (NaN stays NaN)."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return float("inf")


def bits_per_token(mean_nll: float) -> float:
    """Mean NLL converted from nats to bits (bits per character for a character model)."""
    return mean_nll / LN2


def unigram_bits(train_ids: Sequence[int] | torch.Tensor, eval_ids: Sequence[int] | torch.Tensor,
                 vocab_size: int) -> float:
    """Bits per token of the unigram model fitted on ``train_ids`` (add-one smoothing over the
    vocabulary, so an unseen symbol costs finite bits), scored on ``eval_ids``. The baseline a
    language model has to beat: it knows symbol frequencies, nothing about context."""
    train = torch.as_tensor(train_ids, dtype=torch.long).flatten()
    return unigram_bits_from_counts(torch.bincount(train, minlength=vocab_size), eval_ids)


def unigram_bits_from_counts(counts: Sequence[int] | torch.Tensor, eval_ids: Sequence[int] | torch.Tensor) -> float:
    """``unigram_bits`` from the training text's symbol counts (vocab_size,) instead of the text itself."""
    ev = torch.as_tensor(eval_ids, dtype=torch.long).flatten()
    if ev.numel() == 0:
        raise ValueError("unigram_bits: no tokens to evaluate")
    counts = torch.as_tensor(counts, dtype=torch.float64) + 1.0
    logp = counts.log() - counts.sum().log()
    return float(-logp[ev].mean() / LN2)


# --- classification -------------------------------------------------------------------------

def _same_length(name: str, pred: Sequence, gold: Sequence) -> None:
    if len(pred) != len(gold):
        raise ValueError(f"{name}: {len(pred)} predictions for {len(gold)} references")
    if not gold:
        raise ValueError(f"{name}: no examples")


def accuracy(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    _same_length("accuracy", pred, gold)
    return sum(p == g for p, g in zip(pred, gold)) / len(gold)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def macro_f1(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """Unweighted mean of per-class F1 over the union of classes in ``gold`` and ``pred``."""
    _same_length("macro_f1", pred, gold)
    classes = set(gold) | set(pred)
    tp, fp, fn = Counter(), Counter(), Counter()
    for p, g in zip(pred, gold):
        if p == g:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    return sum(_f1(tp[c], fp[c], fn[c]) for c in classes) / len(classes)


def majority_accuracy(train_labels: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """Accuracy of always predicting the most frequent training label (the trivial baseline)."""
    top = Counter(train_labels).most_common(1)[0][0]
    return accuracy([top] * len(gold), gold)


# --- tagging (CoNLL chunks) -----------------------------------------------------------------

def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' → ('B', 'PER'); 'O' → ('O', ''); a bare type 'PER' is treated as 'I-PER'."""
    if tag == "O" or tag == "":
        return "O", ""
    if len(tag) > 1 and tag[1] in "-_" and tag[0] in "BIESO":
        return tag[0], tag[2:]
    return "I", tag


def _ends(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """conlleval's endOfChunk: does a chunk end between the previous tag and this one?"""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I"):
        return cur in ("B", "S", "O") or cur_type != prev_type
    return False


def _starts(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this tag? (IOB1 and BIO both work: an I-
    after O or after another type opens a chunk.)"""
    if cur in ("B", "S"):
        return True
    if cur in ("I", "E"):
        return prev in ("E", "S", "O") or cur_type != prev_type
    return False


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The chunks of one tag sequence as (type, start, end) with ``end`` exclusive."""
    spans: set[tuple[str, int, int]] = set()
    prev, prev_type, start = "O", "", None
    for i, tag in enumerate(list(tags) + ["O"]):  # a trailing O closes the last chunk
        cur, cur_type = _split_tag(tag)
        if start is not None and _ends(prev, prev_type, cur, cur_type):
            spans.add((prev_type, start, i))
            start = None
        if _starts(prev, prev_type, cur, cur_type):
            start = i
        prev, prev_type = cur, cur_type
    return spans


def entity_prf(pred: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 over a corpus of tag sequences (micro-averaged over
    entities, as conlleval reports them). With no entities anywhere, all three are 1.0 by convention
    only if the predictions have none either."""
    _same_length("entity_prf", pred, gold)
    tp = n_pred = n_gold = 0
    for k, (p, g) in enumerate(zip(pred, gold)):
        if len(p) != len(g):
            raise ValueError(f"entity_prf: sentence {k} has {len(p)} predicted tags for {len(g)} gold tags")
        sp, sg = entity_spans(p), entity_spans(g)
        tp += len(sp & sg)
        n_pred += len(sp)
        n_gold += len(sg)
    if n_pred == n_gold == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    return {"precision": precision, "recall": recall, "f1": _f1(tp, n_pred - tp, n_gold - tp)}


def entity_f1(pred: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> float:
    return entity_prf(pred, gold)["f1"]


# --- forecasting ----------------------------------------------------------------------------

def mae(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((torch.as_tensor(pred) - torch.as_tensor(target)).abs().mean())


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((torch.as_tensor(pred) - torch.as_tensor(target)).pow(2).mean().sqrt())


def forecast_metrics(pred: torch.Tensor, target: torch.Tensor, last_value: torch.Tensor) -> dict[str, float]:
    """MAE/RMSE of the model and of the naive forecast that repeats ``last_value`` (the value just
    before each target), plus their ratio: ``mae_ratio`` < 1 means the model beats last-value."""
    pred, target, last_value = (torch.as_tensor(t, dtype=torch.float64) for t in (pred, target, last_value))
    if not pred.shape == target.shape == last_value.shape:
        raise ValueError(f"forecast_metrics: shapes differ: pred {tuple(pred.shape)}, "
                         f"target {tuple(target.shape)}, last_value {tuple(last_value.shape)}")
    out = {"mae": mae(pred, target), "rmse": rmse(pred, target),
           "naive_mae": mae(last_value, target), "naive_rmse": rmse(last_value, target)}
    out["mae_ratio"] = out["mae"] / out["naive_mae"] if out["naive_mae"] > 0 else float("inf")
    return out


# --- sequence generation --------------------------------------------------------------------

def bleu(hypotheses: Sequence[str], references: Sequence[str], max_order: int = 4) -> float:
    """Corpus BLEU (0–100) with one reference per hypothesis, computed by sacrebleu with its defaults:
    13a tokenisation and exponential smoothing of an order with no match (so a corpus that matches no
    4-gram scores above 0, where Papineni et al.'s unsmoothed BLEU is 0; an order the corpus has no
    n-grams of still gives 0). ``max_order`` caps the n-gram order: BLEU-4 is the standard, but a corpus
    of three-word captions has no 4-grams and scores 0 whatever the model does."""
    _same_length("bleu", hypotheses, references)
    from ..data.errors import require  # sacrebleu is an optional extra

    bleu_metrics = require("sacrebleu.metrics", "sacrebleu", "data", "BLEU")
    scorer = bleu_metrics.BLEU(max_ngram_order=max_order)
    return float(scorer.corpus_score(list(hypotheses), [list(references)]).score)


def bleu_order(references: Sequence[str]) -> int:
    """The n-gram order for ``bleu`` on these references: 4, or less when the median reference is
    shorter than 4 words (captions, short answers)."""
    lengths = sorted(len(r.split()) for r in references)
    return max(1, min(4, lengths[len(lengths) // 2] if lengths else 4))


def exact_match(hypotheses: Sequence, references: Sequence) -> float:
    """Fraction of hypotheses equal to their reference (strings compared after stripping)."""
    _same_length("exact_match", hypotheses, references)

    def norm(x):
        return x.strip() if isinstance(x, str) else x

    return sum(norm(h) == norm(r) for h, r in zip(hypotheses, references)) / len(references)
