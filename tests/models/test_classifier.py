"""SequenceClassifier: padded batches equal each sequence alone for every pooling; it learns an
order-dependent task; configs round-trip; bad input is named."""
from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
import torch

from rnnkit.models import MODEL_TYPES
from rnnkit.models.classifier import SequenceClassifier, SequenceClassifierConfig

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "pooling,bidirectional,cell",
    [(p, b, c) for (p, b), c in zip(itertools.product(("last", "mean", "max", "attention"), (False, True)),
                                    itertools.cycle(("lstm", "gru", "rnn_tanh")))],
)
def test_padded_batch_equals_each_sequence_alone(pooling, bidirectional, cell):
    torch.manual_seed(0)
    model = SequenceClassifier(vocab_size=7, num_classes=3, embed_size=5, hidden_size=6, num_layers=2, cell=cell,
                               bidirectional=bidirectional, pooling=pooling, attention_size=4).to(DT).eval()
    lengths = torch.tensor([5, 1, 3, 5])
    tokens = torch.randint(0, 7, (4, 5))
    logits = model(tokens, lengths=lengths)
    pooled, weights = model.encode(tokens, lengths=lengths)
    for b, L in enumerate(lengths.tolist()):
        torch.testing.assert_close(logits[b], model(tokens[b : b + 1, :L])[0])
    if pooling == "attention":
        torch.testing.assert_close(weights.sum(1), torch.ones(4, dtype=DT))
        assert (weights[1, 1:] == 0).all() and (weights[2, 3:] == 0).all()
    else:
        assert weights is None
    # the padding's values never matter
    other = tokens.clone()
    other[1, 1:] = (other[1, 1:] + 1) % 7
    torch.testing.assert_close(model(other, lengths=lengths), logits)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_pooling_computes_what_its_name_says(pooling):
    """The pooled features against the recurrent outputs themselves: the top layer's final state, the mean
    or the element-wise max over each sequence's real steps."""
    torch.manual_seed(0)
    model = SequenceClassifier(vocab_size=7, num_classes=3, embed_size=5, hidden_size=6, cell="gru",
                               pooling=pooling).to(DT).eval()
    lengths = torch.tensor([5, 2, 3])
    tokens = torch.randint(0, 7, (3, 5))
    pooled, _ = model.encode(tokens, lengths=lengths)
    for b, L in enumerate(lengths.tolist()):
        o, _ = model.rnn(model.input(tokens[b : b + 1, :L], DT))  # (1, L, H)
        expected = {"last": o[0, -1], "mean": o[0].mean(0), "max": o[0].amax(0)}[pooling]
        torch.testing.assert_close(pooled[b], expected)


def test_feature_vector_inputs_and_float64():
    model = SequenceClassifier(input_size=3, num_classes=2, hidden_size=4, pooling="mean").to(DT)
    x = torch.randn(2, 5, 3, dtype=DT)
    assert model(x, lengths=[5, 2]).shape == (2, 2)
    assert model(x.float()).dtype == DT  # features follow the model's dtype


def test_learns_whether_a_pattern_occurs(fit, contains_pattern):
    """A bag of tokens cannot tell "1 2" from "2 1"; the recurrent classifier must read the order.
    Bar: ≥ 95 % accuracy on 1000 fresh padded sequences (chance ≈ 50 %) after 250 Adam steps."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train_data = contains_pattern(4000, g)
    test_tokens, test_lengths, test_labels = contains_pattern(1000, g)
    model = SequenceClassifier(vocab_size=4, num_classes=2, embed_size=8, hidden_size=32, cell="gru")
    tokens, lengths, labels = train_data
    fit(model, (tokens, labels, lengths), steps=250, batch=64)
    accuracy = (model.predict(test_tokens, lengths=test_lengths) == test_labels).float().mean().item()
    assert accuracy >= 0.95, accuracy


def test_config_round_trip_through_json():
    model = SequenceClassifier(vocab_size=11, num_classes=3, hidden_size=5, bidirectional=True, pooling="max",
                               cell="rnn_relu", num_layers=2, dropout=0.25)
    blob = json.dumps(dataclasses.asdict(model.config))
    rebuilt = MODEL_TYPES["classifier"].from_config(json.loads(blob))
    assert rebuilt.config == model.config and isinstance(rebuilt.config, SequenceClassifierConfig)
    rebuilt.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 11, (2, 4))
    torch.testing.assert_close(rebuilt.eval()(tokens), model.eval()(tokens))
    assert SequenceClassifier.from_config(model.config).config == model.config


def test_bad_input_is_named(assert_error):
    model = SequenceClassifier(vocab_size=5, num_classes=3, hidden_size=4)
    tokens = torch.randint(0, 5, (2, 4))
    assert_error(ValueError, lambda: model(torch.tensor([[0, 5]])), "inputs", "[0, 5)", "got 5")
    assert_error(ValueError, lambda: model(torch.tensor([[0, -1]])), "inputs", "got -1")
    assert_error(TypeError, lambda: model(torch.randn(2, 4)), "inputs", "integer", "float32")
    assert_error(ValueError, lambda: model(torch.zeros(2, 4, 1, dtype=torch.long)), "inputs", "2-D", "(2, 4, 1)")
    assert_error(ValueError, lambda: model.loss(tokens, torch.tensor([0, 3])), "labels", "[0, 3)", "got 3")
    assert_error(ValueError, lambda: model.loss(tokens, torch.tensor([0, 1, 2])), "labels", "(2,)", "(3,)")
    assert_error(TypeError, lambda: model.loss(tokens, torch.tensor([0.0, 1.0])), "labels", "integer")
    assert_error(ValueError, lambda: model(tokens, lengths=[4, 0]), "length", ">= 1", "got 0")
    assert_error(ValueError, lambda: model(tokens, lengths=[4, 5]), "length 5")
    feats = SequenceClassifier(input_size=2, num_classes=2, hidden_size=4)
    assert_error(ValueError, lambda: feats(torch.full((1, 3, 2), float("inf"))), "inputs", "finite", "inf")
    assert_error(ValueError, lambda: feats(torch.randn(1, 3, 4)), "inputs", "2 features", "(1, 3, 4)")
    assert_error(ValueError, lambda: SequenceClassifier(num_classes=2, vocab_size=3, pooling="sum"), "pooling", "'sum'")
    assert_error(ValueError, lambda: SequenceClassifier(num_classes=0, vocab_size=3), "num_classes", "> 0", "0")
    assert_error(ValueError, lambda: SequenceClassifier(num_classes=2), "vocab_size", "input_size")
    assert_error(ValueError, lambda: SequenceClassifier(num_classes=2, input_size=3, padding_idx=0), "padding_idx",
                 "input_size=3", "got 0")  # it was ignored
    assert_error(TypeError, lambda: SequenceClassifier(num_classes=2, vocab_size=3, hidden_size=4.5), "hidden_size",
                 "4.5")
    assert_error(TypeError, lambda: SequenceClassifier.from_config({"num_classes": 2, "vocab": 3}), "vocab")


def test_no_time_steps_names_the_inputs():
    from rnnkit.models import SequenceClassifier

    model = SequenceClassifier(vocab_size=10, num_classes=2, embed_size=4, hidden_size=4)
    with pytest.raises(ValueError, match=r"inputs have no time steps \(shape \(2, 0\)\)"):
        model(torch.zeros(2, 0, dtype=torch.long))
