"""SequenceTagger: padded batches equal sentences alone; softmax and CRF taggers learn a synthetic entity
pattern that needs context; character features tag words whose id says nothing; bad input is named."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from rnnkit.models import MODEL_TYPES
from rnnkit.models.tagger import SequenceTagger

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")

# The entity task's vocabulary: 0 padding, 1–2 titles ("mr", "dr"), 3–10 names, 11–29 other words.
TITLES, NAMES, OTHERS = range(1, 3), range(3, 11), range(11, 30)
O, B, I = 0, 1, 2


def entity_sentences(n: int, seed: int, min_len: int = 8, max_len: int = 16):
    """A title followed by 1–3 names is an entity: the names are tagged B, I, I. The same names also
    stand alone, after ordinary words, and are then O — a name's tag depends on what precedes it.
    Returns tokens (n, T), tags (n, T) (O at padding) and lengths (n,)."""
    rng = random.Random(seed)
    tokens = torch.zeros(n, max_len, dtype=torch.long)
    tags = torch.zeros(n, max_len, dtype=torch.long)
    lengths = torch.zeros(n, dtype=torch.long)
    for s in range(n):
        L = rng.randint(min_len, max_len)
        words, labels = [], []
        while len(words) < L:
            words.append(rng.choice(OTHERS))
            labels.append(O)
            kind = rng.random()
            if kind < 0.35:  # an entity
                k = rng.randint(1, 3)
                words += [rng.choice(TITLES)] + [rng.choice(NAMES) for _ in range(k)]
                labels += [O, B] + [I] * (k - 1)
            elif kind < 0.6:  # a lone name: not an entity
                words.append(rng.choice(NAMES))
                labels.append(O)
        tokens[s, :L], tags[s, :L], lengths[s] = torch.tensor(words[:L]), torch.tensor(labels[:L]), L
    return tokens, tags, lengths


def spans(tags: list[int]) -> set[tuple[int, int]]:
    """Entity spans (start, end) of a BIO sequence."""
    out, start = set(), None
    for t, tag in enumerate(tags + [O]):
        if start is not None and tag != I:
            out.add((start, t))
            start = None
        if tag == B:
            start = t
    return out


def entity_f1(pred: torch.Tensor, gold: torch.Tensor, lengths: torch.Tensor) -> float:
    hits = n_pred = n_gold = 0
    for p, g, L in zip(pred.tolist(), gold.tolist(), lengths.tolist()):
        ps, gs = spans(p[:L]), spans(g[:L])
        hits, n_pred, n_gold = hits + len(ps & gs), n_pred + len(ps), n_gold + len(gs)
    return 2 * hits / max(n_pred + n_gold, 1)


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_learns_a_synthetic_entity_pattern(decoder, fit):
    """Bar: entity-level F1 ≥ 0.95 on 500 fresh sentences after 100 Adam steps (tagging every name B,
    as a tagger blind to context would, scores 0.20; measured here: 1.0 for both decoders)."""
    torch.manual_seed(0)
    tokens, tags, lengths = entity_sentences(3000, seed=1)
    test_tokens, test_tags, test_lengths = entity_sentences(500, seed=2)
    model = SequenceTagger(vocab_size=30, num_tags=3, embed_size=16, hidden_size=32, decoder=decoder)
    fit(model, (tokens, tags, lengths), steps=100)
    pred = model.predict(test_tokens, lengths=test_lengths)
    assert (pred[torch.arange(16) >= test_lengths.unsqueeze(1)] == -1).all()
    f1 = entity_f1(pred, test_tags, test_lengths)
    assert f1 >= 0.95, f1


def test_character_features_tag_unknown_words(fit):
    """Every word is the unknown-word id 1, so only spelling can tell: a word is tagged 1 when it starts
    with a capital (character ids 27–52) and 0 when it is lower case (1–26). Bar: ≥ 97 % token accuracy
    after 150 steps; without characters the best possible is the majority rate (about 50 %)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        T, L = 6, 5
        lengths = torch.randint(2, T + 1, (n,), generator=g)
        char_lengths = torch.randint(1, L + 1, (n, T), generator=g)
        chars = torch.randint(1, 27, (n, T, L), generator=g)
        capital = torch.randint(0, 2, (n, T), generator=g)
        chars[..., 0] += 26 * capital
        chars = chars.masked_fill(torch.arange(L) >= char_lengths.unsqueeze(2), 0)  # 0 pads each word
        return torch.ones(n, T, dtype=torch.long), capital, lengths, chars, char_lengths

    model = SequenceTagger(vocab_size=2, num_tags=2, embed_size=4, hidden_size=16, char_vocab_size=53,
                           char_embed_size=8, char_hidden_size=16, cell="gru", char_cell="gru")

    def loss_at(step):
        tokens, tags, lengths, chars, char_lengths = batch(32)
        return model.loss(tokens, tags, lengths=lengths, chars=chars, char_lengths=char_lengths)

    fit(model, loss_at, steps=150)
    tokens, tags, lengths, chars, char_lengths = batch(400)
    pred = model.predict(tokens, lengths=lengths, chars=chars, char_lengths=char_lengths)
    mask = torch.arange(6) < lengths.unsqueeze(1)
    accuracy = (pred[mask] == tags[mask]).float().mean().item()
    assert accuracy >= 0.97, accuracy
    assert (pred[~mask] == -1).all()


@pytest.mark.parametrize("decoder,with_chars,cell", [("softmax", False, "lstm"), ("crf", False, "gru"),
                                                     ("softmax", True, "rnn_tanh"), ("crf", True, "lstm")])
def test_padded_batch_equals_each_sentence_alone(decoder, with_chars, cell):
    torch.manual_seed(0)
    char_opts = dict(char_vocab_size=9, char_embed_size=3, char_hidden_size=4, char_cell=cell) if with_chars else {}
    model = SequenceTagger(vocab_size=8, num_tags=4, embed_size=5, hidden_size=6, num_layers=2, cell=cell,
                           decoder=decoder, **char_opts).to(DT).eval()
    lengths = torch.tensor([5, 1, 3])
    tokens = torch.randint(0, 8, (3, 5))
    tags = torch.randint(0, 4, (3, 5))
    extra = {}
    if with_chars:
        extra = dict(chars=torch.randint(0, 9, (3, 5, 4)), char_lengths=torch.randint(1, 5, (3, 5)))
    emissions = model(tokens, lengths=lengths, **extra)
    pred = model.predict(tokens, lengths=lengths, **extra)
    losses = [model.loss(tokens[b : b + 1], tags[b : b + 1], lengths=lengths[b : b + 1],
                         **{k: v[b : b + 1] for k, v in extra.items()}) for b in range(3)]
    for b, L in enumerate(lengths.tolist()):
        alone = {k: v[b : b + 1, :L] for k, v in extra.items()}
        torch.testing.assert_close(emissions[b, :L], model(tokens[b : b + 1, :L], **alone)[0])
        assert pred[b, :L].tolist() == model.predict(tokens[b : b + 1, :L], **alone)[0].tolist()
        assert (pred[b, L:] == -1).all()
        torch.testing.assert_close(losses[b], model.loss(tokens[b : b + 1, :L], tags[b : b + 1, :L], **alone))
    if decoder == "crf":  # the CRF loss is the sentence's negative log-likelihood
        nll = model.crf.neg_log_likelihood(emissions, tags, lengths)
        torch.testing.assert_close(model.loss(tokens, tags, lengths=lengths, **extra), nll.mean())


def test_config_round_trip_through_json():
    model = SequenceTagger(vocab_size=12, num_tags=5, hidden_size=6, decoder="crf", char_vocab_size=7,
                           char_hidden_size=3, dropout=0.1)
    rebuilt = MODEL_TYPES["tagger"].from_config(json.loads(json.dumps(dataclasses.asdict(model.config))))
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    tokens, chars = torch.randint(0, 12, (2, 3)), torch.randint(0, 7, (2, 3, 4))
    assert rebuilt.predict(tokens, chars=chars).tolist() == model.predict(tokens, chars=chars).tolist()


def test_bad_input_is_named(assert_error):
    model = SequenceTagger(vocab_size=6, num_tags=3, hidden_size=4, decoder="crf")
    tokens = torch.randint(0, 6, (2, 4))
    lengths = torch.tensor([4, 2])
    ok = torch.tensor([[0, 1, 2, 0], [1, 1, 99, -7]])  # values past a length are ignored
    model.loss(tokens, ok, lengths=lengths)
    assert_error(ValueError, lambda: model.loss(tokens, torch.tensor([[0, 1, 3, 0], [0, 0, 0, 0]])), "tags",
                 "[0, 3)", "got 3", "(0, 2)")
    assert_error(ValueError, lambda: model.loss(tokens, ok, lengths=[4, 3]), "tags", "got 99")
    assert_error(ValueError, lambda: model.loss(tokens, torch.zeros(2, 5, dtype=torch.long)), "tags", "(2, 4)",
                 "(2, 5)")
    assert_error(ValueError, lambda: model(torch.tensor([[1, 6]])), "tokens", "[0, 6)", "got 6")
    assert_error(TypeError, lambda: model(tokens.float()), "tokens", "integer")
    assert_error(ValueError, lambda: model(tokens, chars=torch.zeros(2, 4, 3, dtype=torch.long)), "chars",
                 "no character features")
    chars_model = SequenceTagger(vocab_size=6, num_tags=3, hidden_size=4, char_vocab_size=5, char_hidden_size=2)
    chars = torch.randint(0, 5, (2, 4, 3))
    assert_error(ValueError, lambda: chars_model(tokens), "chars", "required", "char_vocab_size=5")
    assert_error(ValueError, lambda: chars_model(tokens, chars=chars[:, :3]), "chars", "(2, 4, *)", "(2, 3, 3)")
    assert_error(ValueError, lambda: chars_model(tokens, chars=chars + 5), "chars", "[0, 5)")
    assert_error(ValueError, lambda: chars_model(tokens, chars=chars, char_lengths=torch.full((2, 4), 4)),
                 "char_lengths", "got 4")
    zero = torch.ones(2, 4, dtype=torch.long)
    zero[1, 3] = 0
    assert_error(ValueError, lambda: chars_model(tokens, chars=chars, char_lengths=zero), "char_lengths", ">= 1",
                 "(1, 3)")
    chars_model(tokens, lengths=torch.tensor([4, 3]), chars=chars, char_lengths=zero)  # a padded word: fine
    assert_error(ValueError, lambda: SequenceTagger(vocab_size=6, num_tags=3, decoder="hmm"), "decoder", "'hmm'")
