"""Seq2Seq: teacher forcing 1 equals the scheduled-sampling loop fed only targets, teacher forcing 0
equals greedy generation through the step kernel (tokens, scores, attention), a padded batch equals
one sentence at a time, beam width 1 equals greedy, the schedules follow their formulas, bad input is
named — and the model learns to reverse digit strings."""
from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from rnnkit.models import MODEL_TYPES, Seq2Seq, Seq2SeqConfig

DT = torch.float64
from rnnkit.models.common import BOS_ID as BOS, EOS_ID as EOS, PAD_ID as PAD  # noqa: E402
ATTENTIONS = ("none", "additive", "dot", "general")


def small(attention="general", cell="lstm", bidirectional=False, num_layers=2, seed=0, **kw) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(src_vocab_size=9, tgt_vocab_size=8, embed_size=5, hidden_size=6, num_layers=num_layers, cell=cell,
                   attention=attention, attention_size=4, bidirectional_encoder=bidirectional, **kw).to(DT).eval()


def padded_batch(seed: int = 0, B: int = 4, S: int = 6, T: int = 5):
    """src (B, S) with lengths (one of them S), tgt (B, T) ending in EOS then padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([S, 2, 4, 1][:B])
    src = torch.randint(3, 9, (B, S), generator=g)
    src[torch.arange(S) >= lengths.unsqueeze(1)] = PAD
    tgt = torch.randint(3, 8, (B, T), generator=g)
    tgt_len = torch.tensor([T, 3, 1, 4][:B])
    tgt[torch.arange(B), tgt_len - 1] = EOS
    tgt[torch.arange(T) >= tgt_len.unsqueeze(1)] = PAD
    return src, lengths, tgt


def forced_logprobs(model, src, lengths, tokens):
    """Log-probabilities and attention of ``tokens`` (B, T) under the model, teacher-forced."""
    with torch.no_grad():
        logits, weights = model(src, tokens, src_lengths=lengths)
    return logits.log_softmax(2).gather(2, tokens.unsqueeze(2)).squeeze(2), weights


CASES = list(itertools.product(ATTENTIONS, ("lstm", "gru"), (False, True)))


@pytest.mark.parametrize("attention,cell,bidirectional", CASES)
def test_full_teacher_forcing_equals_feeding_targets_step_by_step(attention, cell, bidirectional):
    model = small(attention, cell, bidirectional)
    src, lengths, tgt = padded_batch()
    with torch.no_grad():
        logits, weights = model(src, tgt, src_lengths=lengths, teacher_forcing_ratio=1.0)
        memory, mask, state = model.encode(src, lengths)
        all_gold = torch.ones_like(tgt, dtype=torch.bool)
        loop_logits, loop_weights = model._decode_loop(tgt, all_gold, model._source(memory, mask), state)
    torch.testing.assert_close(logits, loop_logits, rtol=1e-12, atol=1e-12)
    if attention == "none":
        assert weights is None and loop_weights is None
    else:
        torch.testing.assert_close(weights, loop_weights, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attention,cell,bidirectional", CASES)
def test_no_teacher_forcing_equals_greedy_generation(attention, cell, bidirectional):
    """Ratio 0 feeds the decoder's own argmax (pad and BOS excluded) through the layers; greedy generation does the same
    through the packed step kernel. Tokens, scores and attention must agree up to each EOS."""
    model = small(attention, cell, bidirectional)
    src, lengths, _ = padded_batch(seed=1)
    out = model.generate(src, lengths, max_length=7)
    with torch.no_grad():
        logits, weights = model(src, torch.full((4, 7), 3), src_lengths=lengths, teacher_forcing_ratio=0.0)
    free = logits.clone()
    free[..., [PAD, BOS]] = -math.inf  # neither ever generated nor fed back
    free = free.argmax(2)
    for b in range(4):
        n = int(out.lengths[b])
        assert out.tokens[b, :n].tolist() == free[b, :n].tolist()
        assert n == 7 or out.tokens[b, n - 1] == EOS
        assert (out.tokens[b, n:] == PAD).all()
        lp = logits[b, :n].log_softmax(1).gather(1, free[b, :n].unsqueeze(1)).sum()
        torch.testing.assert_close(out.scores[b], lp, rtol=1e-10, atol=1e-10)
        if attention != "none":
            torch.testing.assert_close(out.extras[b, :n], weights[b, :n], rtol=1e-10, atol=1e-10)
    assert (out.extras is None) == (attention == "none")


@pytest.mark.parametrize("attention,bidirectional", list(itertools.product(ATTENTIONS, (False, True))))
def test_padded_batch_equals_one_sentence_at_a_time(attention, bidirectional):
    model = small(attention, "gru", bidirectional)
    src, lengths, tgt = padded_batch(seed=2)
    with torch.no_grad():
        logits, weights = model(src, tgt, src_lengths=lengths)
    out = model.generate(src, lengths, max_length=6, method="beam", beam_width=3)
    for b in range(4):
        n = int(lengths[b])
        with torch.no_grad():
            one_logits, one_weights = model(src[b : b + 1, :n], tgt[b : b + 1])
        torch.testing.assert_close(logits[b], one_logits[0], rtol=1e-12, atol=1e-12)
        one = model.generate(src[b : b + 1, :n], max_length=6, method="beam", beam_width=3)
        m = int(one.lengths[0])
        assert out.tokens[b, :m].tolist() == one.tokens[0].tolist()[:m]
        if attention != "none":
            assert (weights[b, :, n:] == 0).all()  # padding gets no attention
            torch.testing.assert_close(weights[b, :, :n], one_weights[0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(out.extras[b, :m, :n], one.extras[0, :m], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_beam_search_results(attention):
    model = small(attention, "lstm")
    src, lengths, _ = padded_batch(seed=3)
    greedy = model.generate(src, lengths, max_length=8)
    beam1 = model.generate(src, lengths, max_length=8, method="beam", beam_width=1)
    assert torch.equal(greedy.tokens, beam1.tokens)
    torch.testing.assert_close(greedy.scores, beam1.scores)
    beam = model.generate(src, lengths, max_length=8, method="beam", beam_width=4, length_penalty=0.6)
    # every returned hypothesis carries its own log-probability and attention under the model
    lp, weights = forced_logprobs(model, src, lengths, beam.tokens)
    inside = torch.arange(beam.tokens.shape[1]) < beam.lengths.unsqueeze(1)
    torch.testing.assert_close(beam.scores, (lp * inside).sum(1), rtol=1e-10, atol=1e-10)
    if attention != "none":
        torch.testing.assert_close(beam.extras, weights * inside.unsqueeze(2), rtol=1e-10, atol=1e-10)


def test_scheduled_sampling():
    model = small("dot", "gru")
    src, lengths, tgt = padded_batch(seed=4)
    with torch.no_grad():
        a = model(src, tgt, src_lengths=lengths, teacher_forcing_ratio=0.5, generator=torch.Generator().manual_seed(1))
        b = model(src, tgt, src_lengths=lengths, teacher_forcing_ratio=0.5, generator=torch.Generator().manual_seed(1))
        memory, mask, state = model.encode(src, lengths)
        gold = torch.rand(tgt.shape, generator=torch.Generator().manual_seed(1)) < 0.5
        loop = model._decode_loop(tgt, gold, model._source(memory, mask), state)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[0], loop[0])
    # gradients flow through the sampled loop as through the teacher-forced pass
    model.train()
    model.loss(src, tgt, src_lengths=lengths, teacher_forcing_ratio=0.3).backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


@pytest.mark.parametrize("schedule,k,expected", [
    ("constant", None, [0.9, 0.9, 0.9]),
    ("linear", 0.01, [0.9, 0.8, 0.2]),  # max(0.2, 0.9 - 0.01 i)
    ("exponential", 0.99, [0.9, 0.9 * 0.99**10, 0.2]),
    ("inverse_sigmoid", 5.0, [0.9 * 5 / 6, 0.9 * 5 / (5 + math.exp(2)), 0.2]),
])
def test_teacher_forcing_schedules(schedule, k, expected):
    model = small(teacher_forcing_ratio=0.9, teacher_forcing_schedule=schedule, teacher_forcing_k=k,
                  teacher_forcing_min=0.2)
    got = [model.teacher_forcing_at(i) for i in (0, 10, 10_000)]
    assert got == pytest.approx(expected)


def test_config_round_trip():
    model = small("additive", "gru", True, teacher_forcing_schedule="linear", teacher_forcing_k=1e-3)
    cfg = model.config
    assert isinstance(cfg, Seq2SeqConfig) and MODEL_TYPES["seq2seq"] is Seq2Seq
    for source in (cfg, dataclasses.asdict(cfg)):
        rebuilt = Seq2Seq.from_config(source).to(DT)
        assert rebuilt.config == cfg
        rebuilt.load_state_dict(model.state_dict())
        src, lengths, tgt = padded_batch()
        torch.testing.assert_close(rebuilt(src, tgt, src_lengths=lengths)[0], model(src, tgt, src_lengths=lengths)[0])


def test_bad_input_is_named(assert_error):
    make = lambda **kw: Seq2Seq(**(dict(src_vocab_size=9, tgt_vocab_size=8) | kw))  # noqa: E731
    assert_error(ValueError, lambda: make(attention="luong"), "attention", "'luong'")
    assert_error(ValueError, lambda: make(eos_id=8), "eos_id", "[0, tgt_vocab_size=8)", "got 8")
    assert_error(ValueError, lambda: make(src_vocab_size=5, tgt_vocab_size=20, pad_id=6), "pad_id", "src_vocab_size=5")
    assert_error(ValueError, lambda: make(teacher_forcing_ratio=1.5), "teacher_forcing_ratio", "[0, 1]", "1.5")
    assert_error(ValueError, lambda: make(teacher_forcing_schedule="linear"), "teacher_forcing_k", "linear", "None")
    assert_error(ValueError, lambda: make(teacher_forcing_schedule="exponential", teacher_forcing_k=1.5),
                 "teacher_forcing_k", "(0, 1)", "1.5")
    assert_error(ValueError, lambda: make(teacher_forcing_schedule="cosine"), "teacher_forcing_schedule", "cosine")
    assert_error(ValueError, lambda: make(teacher_forcing_ratio=0.5, teacher_forcing_min=0.9, teacher_forcing_k=0.01,
                                          teacher_forcing_schedule="linear"), "teacher_forcing_min (0.9)",
                 "teacher_forcing_ratio (0.5)")
    assert_error(TypeError, lambda: make(hidden_size="64"), "hidden_size", "'64'")
    model = small()
    src, lengths, tgt = padded_batch()
    assert_error(TypeError, lambda: model(src.float(), tgt), "src", "torch.float32")
    assert_error(ValueError, lambda: model(src, tgt + 5), "tgt", "[0, 8)")
    assert_error(ValueError, lambda: model(src, tgt[:2]), "tgt", "B=4", "(2, 5)")
    assert_error(ValueError, lambda: model.generate(src[:, :0]), "Seq2Seq: src has no time steps", "(4, 0)")
    assert_error(ValueError, lambda: model(src, tgt, src_lengths=torch.tensor([7, 1, 1, 1])),
                 "length 7", "6 time steps")
    assert_error(ValueError, lambda: model(src, tgt, teacher_forcing_ratio=2), "teacher_forcing_ratio", "got 2")
    assert_error(ValueError, lambda: model.teacher_forcing_at(-1), "step", "-1")
    assert_error(ValueError, lambda: model.generate(src, method="beam", beam_width=0), "beam_width", "got 0")
    assert_error(ValueError, lambda: model.generate(src, max_length=0), "max_length", "got 0")


# -- learning -----------------------------------------------------------------------------------
def reversal_batch(B: int, g: torch.Generator, low: int = 3, high: int = 8):
    """Digit strings (ids 4–13) of random lengths, padded; the target is the reversed string + EOS."""
    lengths = torch.randint(low, high + 1, (B,), generator=g)
    digits = torch.randint(4, 14, (B, high), generator=g)
    src = digits.masked_fill(torch.arange(high) >= lengths.unsqueeze(1), PAD)
    tgt = torch.full((B, high + 1), PAD)
    for b, n in enumerate(lengths.tolist()):
        tgt[b, :n] = src[b, :n].flip(0)
        tgt[b, n] = EOS
    return src, lengths, tgt


def test_learns_to_reverse_digit_strings(one_thread, fit):
    torch.manual_seed(0)
    model = Seq2Seq(src_vocab_size=14, tgt_vocab_size=14, embed_size=32, hidden_size=64, attention="general")
    g = torch.Generator().manual_seed(0)

    def loss_at(step):
        src, lengths, tgt = reversal_batch(64, g)
        return model.loss(src, tgt, src_lengths=lengths)

    fit(model, loss_at, steps=300, clip=1.0)
    src, lengths, tgt = reversal_batch(300, torch.Generator().manual_seed(123))
    for method in ("greedy", "beam"):
        out = model.generate(src, lengths, max_length=12, method=method, beam_width=3)
        exact = sum(out.tokens[b, : n + 1].tolist() == tgt[b, : n + 1].tolist() and int(out.lengths[b]) == n + 1
                    for b, n in enumerate(lengths.tolist()))
        assert exact / 300 >= 0.9, (method, exact)
    # attention learned the reversal: output t looks at source position n - 1 - t
    peak = out.extras.argmax(2)  # (B, T, S) → (B, T)
    hits = [peak[b, t] == n - 1 - t for b, n in enumerate(lengths.tolist()) for t in range(n)]
    assert sum(map(bool, hits)) / len(hits) >= 0.8


def test_trailing_padding_is_found_without_src_lengths():
    import pytest as _pytest

    from rnnkit.models import Seq2Seq

    torch.manual_seed(0)
    m = Seq2Seq(src_vocab_size=9, tgt_vocab_size=7, embed_size=8, hidden_size=8).eval()
    src = torch.tensor([[5, 6, 7, 3], [8, 4, 0, 0]])
    tgt = torch.tensor([[3, 4, 5, 2], [4, 2, 0, 0]])
    logits, w = m(src, tgt)
    assert float(w[1, :, 2:].detach().abs().sum()) == 0.0  # no attention on the padding
    with_lengths, _ = m(src, tgt, src_lengths=torch.tensor([4, 2]))
    torch.testing.assert_close(logits, with_lengths)
    with _pytest.raises(ValueError, match="src row 0 has pad_id=0 before a real token"):
        m(torch.tensor([[5, 0, 7, 3]]), tgt[:1])


def test_default_special_ids_are_the_vocabularys():
    """A model built with its defaults reads rnnkit.data's ids: 0 <pad>, 2 <bos>, 3 <eos>."""
    from rnnkit.data import BOS as V_BOS, EOS as V_EOS, PAD as V_PAD
    from rnnkit.models import ImageCaptioner

    for config in (small().config, ImageCaptioner(vocab_size=9).config):
        assert (config.pad_id, config.bos_id, config.eos_id) == (V_PAD, V_BOS, V_EOS)


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_generation_never_emits_pad_or_bos(method):
    """Pad and BOS are not outputs: even a model that favours them never generates them, and the scores
    stay the model's own log-probabilities of the tokens it did generate."""
    model = small("general", "gru")
    with torch.no_grad():
        model.output.bias[PAD] += 8.0  # left alone, greedy would emit pad at every step
        model.output.bias[BOS] += 7.0
    src, lengths, _ = padded_batch(seed=4)
    out = model.generate(src, lengths, max_length=6, method=method, beam_width=3,
                         generator=torch.Generator().manual_seed(0))
    inside = torch.arange(out.tokens.shape[1]) < out.lengths.unsqueeze(1)
    assert not torch.isin(out.tokens[inside], torch.tensor([PAD, BOS])).any()
    with torch.no_grad():
        logits, _ = model(src, out.tokens, src_lengths=lengths)
    picked = logits.log_softmax(2).gather(2, out.tokens.unsqueeze(2)).squeeze(2)
    torch.testing.assert_close(torch.where(inside, picked, 0).sum(1), out.scores, rtol=1e-10, atol=1e-10)


def test_the_configured_teacher_forcing_ratio_is_for_training_only():
    """In eval mode the default is teacher forcing (the loss was a different draw of scheduled-sampling
    coins at every call); in training the config's ratio applies."""
    model = small(teacher_forcing_ratio=0.5)
    src, lengths, tgt = padded_batch()
    forced = model.loss(src, tgt, src_lengths=lengths, teacher_forcing_ratio=1.0)
    assert all(torch.equal(model.loss(src, tgt, src_lengths=lengths), forced) for _ in range(3))
    model.train()
    draws = {model.loss(src, tgt, src_lengths=lengths, generator=torch.Generator().manual_seed(k)).item()
             for k in range(4)}
    assert len(draws) > 1  # the coins are drawn in training


def test_pad_and_eos_must_differ():
    """The loss ignores pad_id targets: with pad_id == eos_id every EOS was dropped from the loss, and the
    trained model never ended a sequence (generation ran to max_length)."""
    from rnnkit.models import VectorToSequence

    with pytest.raises(ValueError, match="Seq2SeqConfig: pad_id and eos_id must differ"):
        Seq2Seq(src_vocab_size=8, tgt_vocab_size=8, embed_size=4, hidden_size=4, pad_id=3, eos_id=3)
    with pytest.raises(ValueError, match="VectorToSequenceConfig: pad_id and eos_id must differ"):
        VectorToSequence(cond_size=3, vocab_size=9, hidden_size=8, embed_size=4, pad_id=3, eos_id=3)


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_attention_ignores_whatever_padded_memory_holds(kind):
    """Weight 0 on padding is not enough: 0 · inf is NaN in the weighted sum, so padded memory is zeroed."""
    from rnnkit.models.attention import Attention

    torch.manual_seed(0)
    att = Attention(kind, 6, 6).double()
    query, memory = torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(2, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    context, weights = att(query, memory, mask)
    for junk in (float("inf"), float("nan"), 1e3):
        spoiled = memory.clone()
        spoiled[1, 3:] = junk
        c, w = att(query, spoiled, mask)
        assert torch.equal(c, context) and torch.equal(w, weights)
