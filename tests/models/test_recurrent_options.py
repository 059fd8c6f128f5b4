"""The layers' variant options on the models (``RecurrentOptions``): every model passes them to its
recurrent layers, round-trips them through its config, generates with them (layer norm through the step
kernel's cell path, zoneout at its expectation) exactly as its whole-sequence forward computes, and refuses
what cannot hold (an option the cell lacks, per-sequence masks under scheduled sampling) by the config's name."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from rnnkit.models import (Forecaster, ImageCaptioner, LanguageModel, Seq2Seq, SequenceClassifier,
                           SequenceTagger, VectorToSequence)
from rnnkit.models.config import RecurrentOptions

DT = torch.float64
OPTIONS = dict(num_layers=2, dropout=0.2, dropout_kind="variational", recurrent_dropout=0.1, weight_drop=0.3,
               zoneout=0.1, zoneout_cell=0.2, layer_norm=True, init="orthogonal", forget_bias=1.0)
MODELS = {
    "language_model": (LanguageModel, dict(vocab_size=9, embed_size=4, hidden_size=6)),
    "classifier": (SequenceClassifier, dict(vocab_size=9, num_classes=3, embed_size=4, hidden_size=6)),
    "tagger": (SequenceTagger, dict(vocab_size=9, num_tags=3, embed_size=4, hidden_size=6, char_vocab_size=5)),
    "seq2seq": (Seq2Seq, dict(src_vocab_size=9, tgt_vocab_size=8, embed_size=4, hidden_size=6)),
    "forecaster": (Forecaster, dict(hidden_size=6)),
    "vector_to_sequence": (VectorToSequence, dict(vocab_size=8, cond_size=5, embed_size=4, hidden_size=6)),
    "image_captioner": (ImageCaptioner, dict(vocab_size=8, embed_size=4, hidden_size=6, image_size=(8, 8),
                                             conv_channels=(2,), feature_size=5)),
}


def recurrent_layers(model) -> list:
    """The model's word- or step-level recurrent layers (a tagger's char encoder left out)."""
    chars = getattr(model, "chars", None)
    inner = set() if chars is None else {id(chars.rnn)}
    return [m for m in model.modules() if hasattr(m, "options") and hasattr(m, "num_layers") and id(m) not in inner]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_gives_its_recurrent_layers_the_options_and_round_trips_them(name):
    cls, sizes = MODELS[name]
    torch.manual_seed(0)
    model = cls(**sizes, **OPTIONS)
    layers = [m for m in recurrent_layers(model) if m.num_layers == 2]
    assert layers, "no recurrent layer found"
    for layer in layers:
        assert layer.options.dropout_kind == "variational" and layer.options.recurrent_dropout == 0.1
        assert layer.options.weight_drop == 0.3 and layer.options.zoneout == 0.1
        assert layer.options.zoneout_cell == 0.2 and layer.layer_norm and layer.init == "orthogonal"
        assert torch.all(layer.bias_ih_l0.view(4, -1)[1] + layer.bias_hh_l0.view(4, -1)[1] == 1.0)
    config = dataclasses.asdict(model.config)
    rebuilt = cls.from_config(config)
    assert dataclasses.asdict(rebuilt.config) == config
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert any(k.startswith("rnn.ln_") or ".ln_" in k for k in model.state_dict())
    old = {k: v for k, v in config.items() if k not in {f.name for f in dataclasses.fields(RecurrentOptions)}}
    assert not recurrent_layers(cls.from_config(old))[0].layer_norm  # an older config: plain layers


def test_the_tagger_keeps_its_char_encoder_plain():
    """The char BiRNN is a one-layer feature extractor of its own cell kind: the options are the word layers'."""
    model = SequenceTagger(**MODELS["tagger"][1], char_cell="gru", layer_norm=True, forget_bias=1.0)
    assert model.rnn.layer_norm and not model.chars.rnn.layer_norm


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_generates_with_layer_norm_and_zoneout_as_its_forward(cell):
    """Generation steps a layer-normalised stack through the cells and zoneout at its expectation: greedy
    tokens equal an argmax over the whole-sequence forward, and scores its log-probabilities; training with
    every option runs and changes the output."""
    torch.manual_seed(1)
    model = LanguageModel(**MODELS["language_model"][1], cell=cell, num_layers=2, layer_norm=True, zoneout=0.3,
                          dropout=0.1, dropout_kind="locked", weight_drop=0.2).to(DT)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".ln_" in n or n.startswith("rnn.ln_"):
                p.add_(torch.rand_like(p) - 0.5)
    prompt = torch.randint(0, 9, (3, 4), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, 6)
    seq = prompt
    with torch.no_grad():
        model.eval()
        for _ in range(6):
            seq = torch.cat([seq, model(seq)[0][:, -1].argmax(1, keepdim=True)], dim=1)
        lp = model(seq)[0][:, 3:-1].log_softmax(2).gather(2, seq[:, 4:].unsqueeze(2)).sum((1, 2))
    assert torch.equal(out.tokens, seq[:, 4:])
    torch.testing.assert_close(out.scores, lp)
    one = model.generate(prompt[:1], 6)  # one row: the numpy path steps no layer norm, torch's does
    assert torch.equal(one.tokens, out.tokens[:1])
    model.train()
    loss = model.loss(torch.randint(0, 9, (4, 10)))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_seq2seq_with_layer_norm_generates_what_teacher_forcing_reads():
    torch.manual_seed(3)
    model = Seq2Seq(**MODELS["seq2seq"][1], layer_norm=True, zoneout=0.2, attention="dot").to(DT).eval()
    src = torch.randint(4, 9, (2, 5), generator=torch.Generator().manual_seed(4))
    out = model.generate(src, max_length=6)
    with torch.no_grad():  # teacher-forced on its own output, each step's argmax is the token it chose
        logits, _ = model(src, out.tokens)
    picked = logits.argmax(2)
    for row, n in enumerate(out.lengths.tolist()):
        assert torch.equal(picked[row, :n], out.tokens[row, :n])


@pytest.mark.parametrize("options", [dict(weight_drop=0.2), dict(recurrent_dropout=0.2),
                                     dict(num_layers=2, dropout=0.3, dropout_kind="locked")],
                         ids=["weight_drop", "recurrent_dropout", "locked"])
def test_scheduled_sampling_refuses_per_sequence_masks(options, assert_error):
    """The decoder runs one step per call under scheduled sampling: masks meant for a sequence would be redrawn
    at every step, so the config refuses the pair — and so does a call that asks for sampling."""
    sizes = MODELS["seq2seq"][1]
    assert_error(ValueError, lambda: Seq2Seq(**sizes, teacher_forcing_ratio=0.5, **options), "Seq2SeqConfig",
                 "scheduled sampling", "teacher_forcing_ratio=1")
    assert_error(ValueError, lambda: Seq2Seq(**sizes, teacher_forcing_schedule="linear", teacher_forcing_k=0.1,
                                             **options), "Seq2SeqConfig", "scheduled sampling")
    model = Seq2Seq(**sizes, **options).train()
    src, tgt = torch.randint(4, 9, (2, 5)), torch.randint(4, 8, (2, 4))
    model.loss(src, tgt).backward()  # teacher-forced: the whole target in one call
    assert_error(ValueError, lambda: model(src, tgt, teacher_forcing_ratio=0.5), "Seq2Seq", "scheduled sampling")
    Seq2Seq(**sizes, zoneout=0.2, teacher_forcing_ratio=0.5).train().loss(src, tgt)  # zoneout draws per step


@pytest.mark.parametrize("options, fragments", [
    (dict(cell="gru", forget_bias=1.0), ["LanguageModelConfig", "forget_bias", "LSTM", "'gru' cell"]),
    (dict(cell="rnn_tanh", layer_norm=True), ["LanguageModelConfig", "layer_norm", "'rnn_tanh' cell"]),
    (dict(cell="gru", zoneout_cell=0.1), ["LanguageModelConfig", "zoneout_cell", "'gru' cell"]),
    (dict(weight_drop=1.0), ["LanguageModelConfig", "weight_drop", "[0, 1)"]),
    (dict(dropout_kind="gaussian"), ["LanguageModelConfig", "dropout_kind", "'locked'"]),
    (dict(dropout_kind="naive", recurrent_dropout=0.2), ["LanguageModelConfig", "recurrent_dropout", "variational"]),
    (dict(init="xavier"), ["LanguageModelConfig", "init", "'orthogonal'"]),
])
def test_bad_options_are_named_by_the_config(options, fragments, assert_error):
    assert_error(ValueError, lambda: LanguageModel(vocab_size=5, **options), *fragments)


def test_an_options_warning_comes_once_at_the_users_line():
    """init='identity' on a non-ReLU cell warned twice (config and layer) inside rnnkit, and again at every
    ``model.config`` read (dataclasses.replace reruns the config's checks)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LanguageModel(vocab_size=5, embed_size=4, hidden_size=4, init="identity"); line = _line()  # noqa: E702
        model.config, model.config
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)], [str(w.message) for w in caught]


def _line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_native_engine_with_an_option_torch_lacks_is_refused_by_the_config(assert_error):
    assert_error(ValueError, lambda: LanguageModel(vocab_size=5, engine="native", layer_norm=True, zoneout=0.1),
                 "LanguageModelConfig", "engine='native'", "cannot run zoneout, layer_norm")
    LanguageModel(vocab_size=5, engine="native", weight_drop=0.2, num_layers=2, dropout=0.1, dropout_kind="locked")


def test_language_model_embedding_dropout_drops_whole_words():
    """embedding_dropout (AWD-LSTM): one mask over the vocabulary per call — every occurrence of a dropped token
    reads zeros, the kept ones are scaled by 1/(1 − p) — in training only; an old config without it loads."""
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=6, embed_size=4, hidden_size=4, embedding_dropout=0.5).to(DT)
    tokens = torch.tensor([[1, 2, 1, 3, 2, 1, 4, 5]])
    seen = []
    model.rnn.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    torch.manual_seed(3)
    model.train()(tokens)
    x = seen[-1][0]  # (T, E), what the recurrent layer read
    weight = model.embedding.weight.detach()
    for t, tok in enumerate(tokens[0].tolist()):
        dropped = bool((x[t] == 0).all())
        same = [s for s, other in enumerate(tokens[0].tolist()) if other == tok]
        assert all(bool((x[s] == 0).all()) == dropped for s in same)  # every occurrence alike
        if not dropped:
            torch.testing.assert_close(x[t], weight[tok] * 2)
    assert any(bool((x[t] == 0).all()) for t in range(8)) and not all(bool((x[t] == 0).all()) for t in range(8))
    model.eval()(tokens)
    torch.testing.assert_close(seen[-1][0], weight[tokens[0]])
    config = dataclasses.asdict(model.config)
    config.pop("embedding_dropout")
    assert LanguageModel.from_config(config).config.embedding_dropout == 0.0
