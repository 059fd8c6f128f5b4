"""What the tasks report, against the definitions: references keep the words the vocabulary lacks, the
copy and most-common baselines are written as an output would be, the forecast's validation loss is the
training objective, and the language model's unigram baseline is the training text's, also after a reload."""
from __future__ import annotations

import json
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


def forecast_run(**options):
    """The forecast task on the built-in sine series and its (untrained) model in eval mode."""
    torch.manual_seed(0)
    settings = settings_for(TASKS["forecast"], ["builtin:sine"])
    for key, value in options.items():
        settings.set_value(key, value)
    run = build_run("forecast", ["builtin:sine"], None, settings, out_dir=None, progress=False)
    return run.task, run.trainer.model.eval()


def test_forecast_validation_loss_is_the_training_objective():
    task, model = forecast_run(max_steps=2, hidden_size=8, window=20, horizon=3)
    spans = task.valid_values.unfold(0, 21, 1).transpose(1, 2)  # the windows training cuts, from validation
    with torch.no_grad():
        expected = float(model.loss(spans))
        got = task.evaluate(model)
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    assert got["mae"] > 0 and "naive_mae" in got  # the data-unit errors are still there


def test_forecast_predict_writes_the_next_steps_in_the_input_format():
    """One series: the next values apart by spaces; several: steps apart by ';', series by ','; the direct
    head's steps are model.forecast(method='direct')."""
    task, model = forecast_run(max_steps=1, hidden_size=8, window=10, horizon=3)
    history = torch.tensor([[0.1], [0.3], [0.2], [0.4]])
    (line,) = task.predict(model, ["0.1 0.3, 0.2 0.4"], steps=3, method="direct")
    with torch.no_grad():
        expected = model.forecast(history.unsqueeze(0), 3, method="direct")[0, :, 0]
    assert [float(v) for v in line.split(" ")] == pytest.approx(expected.tolist(), rel=1e-5)
    from rnnkit.models import Forecaster

    task.columns = ["a", "b"]  # (two series, and a model of two)
    two = Forecaster(num_series=2, hidden_size=4).eval()
    (line,) = task.predict(two, ["0,1;0.2,0.98;0.39,0.92"], steps=2)
    with torch.no_grad():
        expected = two.forecast(torch.tensor([[[0, 1], [0.2, 0.98], [0.39, 0.92]]]), 2)[0]
    got = [[float(v) for v in step.split(",")] for step in line.split(";")]
    assert got == [pytest.approx(row, rel=1e-5) for row in expected.tolist()]


def test_forecast_with_a_direct_head_scores_its_windows():
    """--horizon K: the direct head's K-step forecast from each validation point (the history before it, the
    training series' end first), against the last value repeated K times — the windows reach the series'
    end; none when the series holds no whole window."""
    task, model = forecast_run(max_steps=2, hidden_size=8, window=20, horizon=3)
    context, valid = task.train_values[-20:], task.valid_values
    full = torch.cat([context, valid])
    with torch.no_grad():
        got = task.evaluate(model)
        errors, naive = [], []
        for j in range(len(context) - 1, len(full) - 3):  # forecasts made after each step from the context's last
            pred = model.forecast(full[: j + 1].unsqueeze(0), 3, method="direct")[0].cpu()  # (3, S)
            errors.append((pred - full[j + 1 : j + 4]).abs())
            naive.append((full[j] - full[j + 1 : j + 4]).abs())
    assert got["direct_mae"] == pytest.approx(float(torch.stack(errors).double().mean()), rel=1e-5)
    assert got["direct_naive_mae"] == pytest.approx(float(torch.stack(naive).double().mean()), rel=1e-6)
    assert got["direct_mae_ratio"] == pytest.approx(got["direct_mae"] / got["direct_naive_mae"])
    plain_task, plain_model = forecast_run(max_steps=2, hidden_size=8, window=20)
    with torch.no_grad():
        assert not any(k.startswith("direct_") for k in plain_task.evaluate(plain_model))


def test_unigram_baseline_is_the_training_texts_after_a_reload():
    train, valid = "aaaaaaaaaaaaaaaaaaaaaaaabbbbcc", "ccccccccccccbbbbbba"
    task = LanguageModelTask(LMData(), batch_size=2, seed=0)
    task.fit(train)
    task.set_data(train, valid)
    scored = task.encode(valid)[1:]  # the tokens the model is scored on (one stream here): all but the first
    own = M.unigram_bits(task.encode(train), scored, len(task.tokenizer))
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


@pytest.mark.parametrize("rows", [1, 3])
def test_lm_validation_scores_every_token_but_the_first(rows):
    """eval_batch streams, each read from a fresh state, and the tokens they leave over read on from the
    last stream: against each stream run whole (the last one with the leftover), 23 tokens, 22 scored."""
    from rnnkit.models import LanguageModel

    text = "abcabcab dcab abc abcab"
    task = LanguageModelTask(LMData(eval_batch=rows), batch_size=2, seed=0)
    task.fit(text)
    ids = task.encode(text)
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=len(task.tokenizer), embed_size=4, hidden_size=6, cell="lstm").double().eval()
    L = (len(ids) - 1) // rows
    total = 0.0
    with torch.no_grad():
        for r in range(rows):
            stop = (r + 1) * L if r < rows - 1 else len(ids) - 1  # the last stream takes the leftover
            logits, _ = model(ids[r * L : stop].unsqueeze(0))
            total += float(torch.nn.functional.cross_entropy(logits[0], ids[r * L + 1 : stop + 1], reduction="sum"))
        assert task.mean_nll(model, ids) == pytest.approx(total / (len(ids) - 1), rel=1e-12)
    assert (len(ids) - 1) % rows == (0 if rows == 1 else 1)  # the case with a leftover is the one tested


def _series(values: list[list[float]], columns: list[str]):
    from rnnkit.data.readers import Series

    return Series(torch.tensor(values), columns)


def test_forecast_matches_validation_columns_by_name():
    from rnnkit.data import DataError
    from rnnkit.train.tasks.forecast import ForecastData, ForecastTask

    task = ForecastTask(ForecastData(window=3), batch_size=2, seed=0)
    train = _series([[float(i), 100.0 + i] for i in range(10)], ["a", "b"])
    task.fit(train)
    task.set_data(train, _series([[10.0, 110.0], [11.0, 111.0]], ["a", "b"]))
    swapped = ForecastTask(ForecastData(window=3), batch_size=2, seed=0)
    swapped.fit(train)
    swapped.set_data(train, _series([[110.0, 10.0], [111.0, 11.0]], ["b", "a"]))
    assert torch.equal(swapped.valid_values, task.valid_values)  # columns reordered by name
    with pytest.raises(DataError, match=r"columns \['x', 'y'\], the model forecasts \['a', 'b'\]"):
        swapped.set_data(train, _series([[1.0, 2.0], [3.0, 4.0]], ["x", "y"]))
    swapped.set_data(train, _series([[10.0, 110.0], [11.0, 111.0]], ["1", "2"]))  # no header: by position
    assert torch.equal(swapped.valid_values, task.valid_values)


def test_forecast_evaluate_on_a_short_series_without_training_data():
    """Too short for the training objective (horizon 3 needs 4 steps): the errors, no loss — not a crash."""
    task, model = forecast_run(max_steps=1, hidden_size=8, window=5, horizon=3)
    task.train_values = None  # as `rnnkit evaluate` loads it: no training series
    task.set_data(None, _series([[0.1], [0.2], [0.3]], task.columns))
    with torch.no_grad():
        out = task.evaluate(model)
    assert "loss" not in out and out["mae"] >= 0
    # one step: scored after the training series' end the checkpoint keeps; on its own it has nothing to score
    task.load_vocab_state({**task.vocab_state(), "context": [[0.0]] * 5})  # (as evaluate loads a checkpoint)
    task.set_data(None, _series([[0.4]], task.columns))
    with torch.no_grad():
        assert task.evaluate(model)["mae"] >= 0
    task.drop_saved_context()
    with pytest.raises(ValueError, match="the validation series needs at least 2 steps"):
        task.set_data(None, _series([[0.4]], task.columns))



def test_classify_char_tokenizer_honours_lowercase():
    """--tokenizer char --lowercase true folded nothing (the option reached only the word tokenizer)."""
    from rnnkit.train.tasks.classify import ClassifyData, ClassifyTask

    task = ClassifyTask(ClassifyData(tokenizer="char", lowercase=True), batch_size=2, seed=0)
    task.fit([("Dubois", "fr"), ("Smith", "en")])
    assert task.tokenizer.encode("DUBOIS") == task.tokenizer.encode("dubois")
    assert task.tokenizer.to_dict()["options"] == {"lowercase": True, "nfc": True}  # and the checkpoint keeps it


def test_forecast_evaluate_after_a_reload_keeps_the_training_context():
    """`rnnkit evaluate` reloads the task without its training series: the end of it, saved with the
    checkpoint, is still the first context, so the logged validation metric is reproduced."""
    from rnnkit.train.tasks.forecast import ForecastTask

    task, model = forecast_run(max_steps=1, hidden_size=8, window=20)
    with torch.no_grad():
        logged = task.evaluate(model)
        reloaded = ForecastTask(task.data, batch_size=task.batch_size, seed=0)
        reloaded.load_vocab_state(json.loads(json.dumps(task.vocab_state())))
        reloaded.set_data(None, _series(task.valid_values.tolist(), task.columns))
        assert reloaded.evaluate(model) == pytest.approx(logged)



def test_a_held_out_example_with_a_class_training_lacks_goes_back_to_training(tmp_path):
    """A label seen once could land in the random validation part, and evaluation refuses unseen labels:
    whether training started depended on --seed. Such examples now stay in training, for every seed."""
    from rnnkit.data import write_labelled
    from rnnkit.train.tasks.classify import ClassifyData, ClassifyTask

    rows = [(f"good film {i}", "pos") for i in range(20)] + [(f"bad film {i}", "neg") for i in range(20)]
    rows.insert(17, ("strange film", "odd"))  # the one example of its label
    write_labelled(tmp_path / "d.csv", rows)
    moved = 0
    for seed in range(40):
        train, valid, how = ClassifyTask.load_splits([str(tmp_path / "d.csv")], None, ClassifyData(), seed)
        assert ("strange film", "odd") in train and len(train) + len(valid) == len(rows)
        assert {label for _, label in valid} <= {label for _, label in train}
        moved += "kept for training" in how
    assert moved > 0  # some seeds held it out and put it back


def test_classify_predict_answers_a_blank_line_with_an_empty_line():
    from rnnkit.train.tasks.classify import ClassifyData, ClassifyTask
    from rnnkit.models import SequenceClassifier

    task = ClassifyTask(ClassifyData(), batch_size=2, seed=0)
    task.fit([("good film", "pos"), ("bad film", "neg")])
    torch.manual_seed(0)
    model = SequenceClassifier(vocab_size=len(task.tokenizer), num_classes=2, embed_size=4, hidden_size=4).eval()
    with torch.no_grad():
        out = task.predict(model, ["good film", "", "  ", "bad"])
    assert out[1:3] == ["", ""] and out[0] in task.labels and out[3] in task.labels
