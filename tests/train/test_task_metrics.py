"""What the tasks report, against the definitions: references keep the words the vocabulary lacks, the
copy and most-common baselines are written as an output would be, the forecast's validation loss is the
training objective, and the language model's unigram baseline is the training text's, also after a reload."""
from __future__ import annotations

import math
import types

import pytest
import torch
from torch import nn

from rnnkit.train import metrics as M
from rnnkit.train.tasks import TASKS, build_run, settings_for
from rnnkit.train.tasks.caption import CaptionData, CaptionTask
from rnnkit.train.tasks.lm import LanguageModelTask, LMData
from rnnkit.train.tasks.translate import TranslateData, TranslateTask


class Emits(nn.Module):
    """A stand-in Seq2Seq that answers every source with the same target ids."""

    def __init__(self, ids: list[int], vocab: int):
        super().__init__()
        self.w, self.ids, self.vocab = nn.Parameter(torch.zeros(1)), ids, vocab

    def generate(self, src, lengths, **kw):
        return types.SimpleNamespace(tokens=torch.tensor([self.ids] * src.shape[0]))

    def forward(self, src, tgt, src_lengths=None, teacher_forcing_ratio=1.0):
        return torch.zeros(tgt.shape[0], tgt.shape[1], self.vocab), None


def test_an_unknown_word_in_the_output_does_not_match_the_reference():
    train, valid = [("a b", "x y"), ("c d", "z w"), ("a d", "x w")], [("a e", "x q")]  # q: not in training
    task = TranslateTask(TranslateData(), batch_size=2, seed=0)
    task.fit(train)
    task.set_data(train, valid)
    tok = task.tgt_tok
    model = Emits(tok.encode("x") + [tok.encode("never-seen")[0]] + tok.encode("", eos=True), len(tok))
    assert task._translate(model, task.valid_src) == ["x <unk>"]
    m = task.evaluate(model)
    assert m["exact_match"] == 0.0  # it was 1.0: the reference had become "x <unk>" too
    assert m["bleu"] == pytest.approx(M.bleu(["x <unk>"], ["x q"], m["bleu_order"]))


@pytest.mark.parametrize("lowercase", [False, True])
def test_copying_an_identical_target_scores_full_marks(lowercase):
    pairs = [("Hello World", "Hello World"), ("Good Day", "Good Day"), ("Hello Day", "Hello Day")]
    valid = [("Hello New", "Hello New")]  # an unseen word, and capitals a lowercasing tokenizer folds
    task = TranslateTask(TranslateData(lowercase=lowercase), batch_size=2, seed=0)
    task.fit(pairs)
    task.set_data(pairs, valid)
    assert task.baseline() == {"copy_source_bleu": pytest.approx(100.0), "copy_source_exact_match": 1.0}


def test_caption_references_keep_unseen_words():
    from rnnkit.data.captions import Captions

    images = torch.zeros(4, 1, 4, 4)
    train = Captions(images[:3], ["one two", "two three", "one two"])
    task = CaptionTask(CaptionData(), batch_size=2, seed=0)
    task.fit(train)
    task.set_data(train, Captions(images[3:], ["one nine"]))  # nine: not in training
    assert task.valid_refs == ["one nine"]
    assert task.baseline()["most_common_exact_match"] == 0.0


def test_forecast_validation_loss_is_the_training_objective():
    torch.manual_seed(0)
    settings = settings_for(TASKS["forecast"], ["builtin:sine"])
    for key, value in {"max_steps": 2, "hidden_size": 8, "window": 20, "horizon": 3}.items():
        settings.set_value(key, value)
    run = build_run("forecast", ["builtin:sine"], None, settings, out_dir=None, progress=False)
    task, model = run.task, run.trainer.model.eval()
    spans = task.valid_values.unfold(0, 21, 1).transpose(1, 2)  # the windows training cuts, from validation
    with torch.no_grad():
        expected = float(model.loss(spans))
        got = task.evaluate(model)
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    assert got["mae"] > 0 and "naive_mae" in got  # the data-unit errors are still there


def test_unigram_baseline_is_the_training_texts_after_a_reload():
    train, valid = "aaaaaaaaaaaaaaaaaaaaaaaabbbbcc", "ccccccccccccbbbbbba"
    task = LanguageModelTask(LMData(), batch_size=2, seed=0)
    task.fit(train)
    task.set_data(train, valid)
    own = M.unigram_bits(task.encode(train), task.encode(valid), len(task.tokenizer))
    assert task.baseline() == {"unigram_bits_per_char": pytest.approx(own)}
    reloaded = LanguageModelTask(LMData(), batch_size=2, seed=0)
    reloaded.load_vocab_state(task.vocab_state())  # what `rnnkit evaluate` does with a checkpoint
    reloaded.set_data(None, valid)
    assert reloaded.baseline() == {"unigram_bits_per_char": pytest.approx(own)}
    # a checkpoint without the counts: no baseline rather than one fitted on the text it scores
    old = LanguageModelTask(LMData(), batch_size=2, seed=0)
    old.load_vocab_state({"tokenizer": task.vocab_state()["tokenizer"]})
    old.set_data(None, valid)
    assert old.baseline() == {}


def test_perplexity_at_its_limits():
    assert M.perplexity(709.0) == pytest.approx(math.exp(709.0))
    assert M.perplexity(710.0) == math.inf
    assert math.isnan(M.perplexity(float("nan")))
