"""LanguageModel: the incremental step equals the whole-sequence forward, generation equals a naive
argmax loop over forward, padded prompts equal one prompt at a time, the packed kernel follows
training, configs round-trip, bad input is named — and the model learns a small grammar."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rnnkit.models import MODEL_TYPES, LanguageModel, LanguageModelConfig

DT = torch.float64
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")


def small(cell: str = "lstm", seed: int = 0, **kw) -> LanguageModel:
    torch.manual_seed(seed)
    options = dict(vocab_size=11, embed_size=6, hidden_size=8, num_layers=2, cell=cell) | kw
    return LanguageModel(**options).to(DT).eval()


def tokens(B: int, T: int, seed: int = 0, V: int = 11) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def naive_greedy(model: LanguageModel, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """Rerun forward over the whole text for every new token: slow, obviously right."""
    seq = prompt
    with torch.no_grad():
        for _ in range(n):
            seq = torch.cat([seq, model(seq)[0][:, -1].argmax(1, keepdim=True)], dim=1)
    return seq[:, prompt.shape[1] :]


@pytest.mark.parametrize("cell", CELLS)
def test_step_equals_forward(cell):
    model = small(cell)
    x = tokens(3, 7)
    logits, final = model(x)
    state, steps = None, []
    for t in range(7):
        out, state = model.step(x[:, t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1), logits, rtol=1e-12, atol=1e-12)
    for a, e in zip(state if cell == "lstm" else [state], final if cell == "lstm" else [final]):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generate_equals_naive_greedy(cell):
    model = small(cell)
    prompt = tokens(3, 5, seed=1)
    out = model.generate(prompt, 8)
    assert torch.equal(out.tokens, naive_greedy(model, prompt, 8))
    assert out.tokens.shape == (3, 8) and out.lengths.tolist() == [8, 8, 8]
    # scores are the log-probabilities of the chosen tokens under the model
    seq = torch.cat([prompt, out.tokens], dim=1)
    with torch.no_grad():
        lp = model(seq)[0][:, 4:-1].log_softmax(2).gather(2, out.tokens.unsqueeze(2)).sum((1, 2))
    torch.testing.assert_close(out.scores, lp)
    # a one-token prompt, and a 1-D prompt
    assert torch.equal(model.generate(prompt[0, :1], 4).tokens, naive_greedy(model, prompt[:1, :1], 4))


def test_padded_prompts_equal_one_at_a_time():
    model = small("lstm")
    prompt = tokens(4, 6, seed=2)
    lengths = torch.tensor([6, 1, 3, 2])
    batch = model.generate(prompt, 5, lengths=lengths)
    for b in range(4):
        one = model.generate(prompt[b : b + 1, : lengths[b]], 5)
        assert torch.equal(batch.tokens[b], one.tokens[0])
        torch.testing.assert_close(batch.scores[b], one.scores[0])


def test_generate_continues_from_a_state():
    model = small("gru")
    text = tokens(2, 9, seed=3)
    _, state = model(text[:, :5])
    assert torch.equal(model.generate(text[:, 5:], 6, state=state).tokens, model.generate(text, 6).tokens)


def test_search_methods_and_eos():
    model = small("lstm")
    prompt = tokens(2, 3, seed=4)
    greedy = model.generate(prompt, 10, eos_id=3)
    beam1 = model.generate(prompt, 10, method="beam", beam_width=1, eos_id=3)
    assert torch.equal(greedy.tokens, beam1.tokens) and torch.equal(greedy.lengths, beam1.lengths)
    beam = model.generate(prompt, 10, method="beam", beam_width=5, eos_id=3)
    for b in range(2):  # each returned hypothesis is scored by the model's own log-probabilities
        n = int(beam.lengths[b])
        seq = torch.cat([prompt[b], beam.tokens[b, :n]]).unsqueeze(0)
        with torch.no_grad():
            lp = model(seq)[0][0, 2:-1].log_softmax(1).gather(1, beam.tokens[b, :n].unsqueeze(1)).sum()
        torch.testing.assert_close(beam.scores[b], lp)
        assert n == 10 or beam.tokens[b, n - 1] == 3
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    a = model.generate(prompt, 10, method="sample", top_k=4, temperature=0.8, generator=g())
    b = model.generate(prompt, 10, method="sample", top_k=4, temperature=0.8, generator=g())
    assert torch.equal(a.tokens, b.tokens)
    # each filter, pushed to its limit, leaves only the most likely token: sampling becomes greedy
    greedy = model.generate(prompt, 10)
    for limit in (dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-4)):
        only = model.generate(prompt, 10, method="sample", generator=g(), **limit)
        assert torch.equal(only.tokens, greedy.tokens), limit
    # and unfiltered sampling does not (11 tokens, 20 draws from a barely trained model)
    free = model.generate(prompt, 10, method="sample", temperature=2.0, generator=g())
    assert not torch.equal(free.tokens, greedy.tokens)


def test_generate_follows_training_and_keeps_the_mode():
    """After an optimiser step the kernel is repacked: generation still equals the naive loop. The
    model's train/eval mode is restored, and dropout never reaches generation."""
    model = small("lstm", dropout=0.3)
    prompt = tokens(2, 4, seed=5)
    model.generate(prompt, 3)  # packs the kernel
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    model.loss(tokens(4, 9, seed=6)).backward()
    opt.step()
    out = model.generate(prompt, 6)
    assert model.training
    model.eval()
    assert torch.equal(out.tokens, naive_greedy(model, prompt, 6))


@pytest.mark.parametrize("update", ["fused_adam", "data_write", "no_grad_in_place"])
def test_generate_and_step_see_every_kind_of_weight_update(update):
    """Fused optimisers leave ``_version`` alone and writes through ``p.data`` bump nothing: the packed
    kernel must still follow the weights (a stale one would silently generate from old weights)."""
    model = small("gru")
    prompt = tokens(2, 4, seed=5)
    model.generate(prompt, 3)  # packs the kernel
    model.step(prompt[:, 0])
    if update == "fused_adam":
        opt = torch.optim.Adam(model.parameters(), lr=0.5, fused=True)
        model.loss(tokens(4, 9, seed=6)).backward()
        opt.step()
    else:
        for p in model.parameters():
            (p.data if update == "data_write" else p.detach()).mul_(-1.5)
    out = model.generate(prompt, 6)
    model.eval()
    assert torch.equal(out.tokens, naive_greedy(model, prompt, 6))
    logits, _ = model.step(prompt[:, 0])
    torch.testing.assert_close(logits, model(prompt[:, :1])[0][:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_new_tokens_is_named(bad):
    with pytest.raises(ValueError, match=f"generate: max_new_tokens must be an int >= 1, got {bad!r}"):
        small("gru").generate(tokens(2, 4, seed=5), bad)


def test_a_state_of_the_wrong_batch_is_named_as_the_state():
    model = small("lstm")
    _, state = model(tokens(2, 4, seed=5))  # a state for 2 rows
    with pytest.raises(ValueError, match=r"LanguageModel.generate: state does not fit a batch of 3 \(rnnkit.LSTM: h_0"):
        model.generate(tokens(3, 4, seed=6), 2, state=state)
    with pytest.raises(ValueError, match=r"^LanguageModel: state does not fit a batch of 3 \(rnnkit.LSTM: h_0"):
        model(tokens(3, 4, seed=6), state)
    with pytest.raises(TypeError, match=r"^LanguageModel: state does not fit .* hx must be a tuple"):
        model(tokens(2, 4, seed=6), state[0])


def test_generation_restores_each_submodule_mode():
    model = small("lstm", dropout=0.3)
    model.train()
    model.embedding.eval()  # a part the user froze
    model.generate(tokens(2, 4, seed=5), 3)
    assert model.training and model.rnn.training and not model.embedding.training


def test_loss_masks_padding():
    model = small("gru")
    x = tokens(3, 6, seed=8)
    lengths = torch.tensor([6, 3, 4])
    with torch.no_grad():
        batch = model.loss(x, lengths)
        per_row = [model.loss(x[b : b + 1, : lengths[b]]) * (lengths[b] - 1) for b in range(3)]
    torch.testing.assert_close(batch, sum(per_row) / (lengths - 1).sum())


def test_loss_without_lengths_leaves_out_padding_targets_when_the_model_knows_its_pad_id():
    """A pad_batch batch given without lengths: with padding_idx the padded targets are not scored (the
    model learned to predict <pad> and generated it), so the loss is the one with lengths."""
    from rnnkit.data import PAD, pad_batch

    torch.manual_seed(0)
    model = LanguageModel(vocab_size=13, embed_size=8, hidden_size=8, cell="gru", padding_idx=PAD)
    x, lengths = pad_batch([[5, 6, 7, 8, 9, 10], [4, 5, 6], [7, 8, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(model.loss(x), model.loss(x, lengths))
        model_without = LanguageModel(vocab_size=13, embed_size=8, hidden_size=8, cell="gru")
        model_without.load_state_dict(model.state_dict())
        assert not torch.allclose(model_without.loss(x), model_without.loss(x, lengths))  # (no pad id: scored)


def test_config_round_trip_and_tied_weights():
    model = LanguageModel(vocab_size=13, embed_size=8, hidden_size=8, cell="gru", tie_weights=True)
    cfg = model.config
    assert isinstance(cfg, LanguageModelConfig) and cfg.num_layers == 2 and cfg.tie_weights
    assert model.decoder.weight is model.embedding.weight
    assert MODEL_TYPES["language_model"] is LanguageModel
    for source in (cfg, dataclasses.asdict(cfg)):
        rebuilt = LanguageModel.from_config(source)
        assert rebuilt.config == cfg
        rebuilt.load_state_dict(model.state_dict())
        x = tokens(2, 4, V=13)
        torch.testing.assert_close(rebuilt(x)[0], model(x)[0])


def test_bad_input_is_named(assert_error):
    assert_error(ValueError, lambda: LanguageModel(vocab_size=0), "vocab_size", "> 0", "got 0")
    assert_error(TypeError, lambda: LanguageModel(vocab_size=10.5), "vocab_size", "10.5")
    assert_error(ValueError, lambda: LanguageModel(vocab_size=10, cell="elman"), "cell", "'elman'")
    assert_error(ValueError, lambda: LanguageModel(vocab_size=10, dropout=1.5), "dropout", "1.5")
    assert_error(ValueError, lambda: LanguageModel(vocab_size=10, embed_size=4, hidden_size=8, tie_weights=True),
                 "tie_weights", "embed_size=4", "hidden_size=8")
    assert_error(ValueError, lambda: LanguageModel(vocab_size=10, padding_idx=10), "padding_idx", "[0, 10)", "10")
    assert_error(TypeError, lambda: LanguageModel.from_config({"vocab_size": 5, "hidden": 3}), "unknown", "hidden")
    model = small()
    assert_error(TypeError, lambda: model(torch.rand(2, 3)), "tokens", "torch.float32")
    assert_error(ValueError, lambda: model(torch.tensor([[1, 11]])), "tokens", "[0, 11)", "got 11")
    assert_error(ValueError, lambda: model(torch.tensor([1, 2])), "tokens", "2-D", "1-D")
    assert_error(ValueError, lambda: model.loss(torch.tensor([[1]])), "at least 2 steps", "got 1")
    assert_error(ValueError, lambda: model.step(torch.tensor([[1]])), "tokens", "1-D", "2-D")
    assert_error(TypeError, lambda: model.step(torch.tensor([1]), torch.zeros(2, 1, 8, dtype=DT)), "hx", "tuple")
    assert_error(ValueError, lambda: model.step(torch.tensor([1, 2]), (torch.zeros(2, 1, 8, dtype=DT),) * 2),
                 "h_0", "(2, 1, 8)", "expected (2, 2, 8)")
    assert_error(ValueError, lambda: model.generate(torch.tensor([[1]]), 0), "max_new_tokens", ">= 1", "got 0")
    assert_error(ValueError, lambda: model.generate(torch.zeros(1, 0, dtype=torch.long), 3), "prompt", "(1, 0)")
    assert_error(ValueError, lambda: model.generate(torch.tensor([[1]]), 3, method="viterbi"), "method", "viterbi")
    assert_error(ValueError, lambda: model.generate(torch.tensor([[1]]), 3, eos_id=11), "eos_id", "[0, 11)", "11")
    assert_error(ValueError, lambda: model.generate(torch.tensor([[1]]), 3, method="sample", top_p=0.0), "top_p")
    assert_error(ValueError, lambda: model.generate(torch.tensor([[1, 2]]), 3, lengths=torch.tensor([3])),
                 "length 3", "2 time steps")
    assert_error(TypeError, lambda: model.generate(torch.tensor([[1]]), 3, state=torch.zeros(2, 1, 8, dtype=DT)),
                 "tuple")


# -- learning -----------------------------------------------------------------------------------
WORDS = [".", "the", "a", "cat", "dog", "quickly", "slowly", "sleeps", "purrs", "barks", "runs"]
VERBS = {3: (7, 8), 4: (9, 10)}  # the verb agrees with the noun two words back


def grammar_text(sentences: int, g: torch.Generator) -> list[int]:
    """det noun adverb verb '.': 4 fair binary choices per 5 tokens, 0.555 nats per token."""
    out = []
    for det, noun, adverb, verb in torch.randint(0, 2, (sentences, 4), generator=g).tolist():
        out += [1 + det, 3 + noun, 5 + adverb, VERBS[3 + noun][verb], 0]
    return out


def grammar_batch(B: int, T: int, g: torch.Generator) -> torch.Tensor:
    offsets = torch.randint(0, 5, (B,), generator=g).tolist()  # start anywhere in a sentence
    return torch.stack([torch.tensor(grammar_text(T // 5 + 2, g)[o : o + T]) for o in offsets])


def grammatical(ids: list[int]) -> tuple[int, int]:
    """(good, total) over the complete sentences in ``ids`` after its first '.'."""
    text = ids[ids.index(0) + 1 :] if 0 in ids else []
    good = total = 0
    while 0 in text:
        end = text.index(0)
        s, text = text[:end], text[end + 1 :]
        total += 1
        good += len(s) == 4 and s[0] in (1, 2) and s[1] in VERBS and s[2] in (5, 6) and s[3] in VERBS[s[1]]
    return good, total


def test_learns_a_small_grammar(one_thread, fit):
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=len(WORDS), embed_size=16, hidden_size=32, num_layers=1)
    g = torch.Generator().manual_seed(0)
    test = grammar_batch(64, 30, torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = float(model.loss(test))
    fit(model, lambda step: model.loss(grammar_batch(32, 30, g)), steps=150)
    with torch.no_grad():
        after = float(model.loss(test))
    entropy = 4 * math.log(2) / 5
    assert before > 2.0 and after < entropy + 0.06, (before, after)
    out = model.generate(torch.zeros(16, 1, dtype=torch.long), 40, method="sample",
                         generator=torch.Generator().manual_seed(2))
    good, total = map(sum, zip(*(grammatical(row) for row in out.tokens.tolist())))
    assert total >= 100 and good / total >= 0.95, (good, total)


def test_generation_inside_autocast_runs_in_full_precision():
    """The packed step kernels read float32 weights and states: @inference switches autocast off, so
    generation inside an autocast region (a training step under AMP, say) equals generation outside."""
    model = small("lstm")
    prompt = tokens(2, 4, seed=5)
    expected = model.generate(prompt, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.generate(prompt, 6)
    assert torch.equal(got.tokens, expected.tokens)
    torch.testing.assert_close(got.scores, expected.scores)


def test_a_model_that_generated_copies_and_saves_whole():
    """After a batched generation (float32 CPU: its kernel holds oneDNN-packed weights, which cannot be
    copied or pickled) ``copy.deepcopy`` and ``torch.save`` of the whole model work, and the copy
    generates what the original does."""
    import copy
    import io

    torch.manual_seed(0)
    model = LanguageModel(vocab_size=7, embed_size=8, hidden_size=8, num_layers=1).eval()
    prompt = torch.tensor([[1, 2], [3, 4]])
    out = model.generate(prompt, 3)
    twin = copy.deepcopy(model)
    assert torch.equal(twin.generate(prompt, 3).tokens, out.tokens)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded.generate(prompt, 3).tokens, out.tokens)
    assert model._kernel is not None  # the original keeps its packed kernel


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_token_ids_must_be_long(dtype):
    """Other integer types failed later, inside cross_entropy, decoding or F.embedding, in torch's words."""
    model = small()
    with pytest.raises(TypeError, match=rf"tokens must hold integer .*\(torch.long\), got dtype {dtype}; convert with "
                                        r"\.long\(\)"):
        model(tokens(2, 3).to(dtype))


@pytest.mark.parametrize("method", ["greedy", "sample", "beam"])
def test_never_keeps_tokens_out_and_scores_the_model_s_own(method):
    """Ids the model was never taught to predict (a vocabulary's specials) but gives mass: left out on every
    path (one row in numpy, a batch in torch, beams), the chosen tokens scored by the model's own
    log-probabilities, so a generated row's score is still its teacher-forced log-likelihood."""
    model = small("gru")
    with torch.no_grad():
        model.decoder.bias[:4] += 6.0  # the specials would win
    prompt = tokens(2, 3, seed=7)
    kw = {"method": method, "never": [0, 1, 2, 3, 3]}
    if method == "sample":
        kw |= {"generator": torch.Generator().manual_seed(0)}
    out = model.generate(prompt, 12, **kw)
    assert (out.tokens >= 4).all()
    if method == "greedy":  # one row at a time (the numpy path) gives what the batch gave
        for b in range(2):
            row = model.generate(prompt[b : b + 1], 12, **kw)
            assert row.tokens[0].tolist() == out.tokens[b].tolist()
            torch.testing.assert_close(row.scores, out.scores[b : b + 1])
    if method == "sample":  # one row: the numpy path leaves them out too
        row = model.generate(prompt[:1], 40, **kw)
        assert (row.tokens >= 4).all()
    full = torch.cat([prompt, out.tokens], 1)
    log_probs = model(full[:, :-1])[0].log_softmax(-1)[:, 2:]  # (B, 12, V): each new token's distribution
    teacher = log_probs.gather(2, out.tokens.unsqueeze(2)).squeeze(2).sum(1)
    torch.testing.assert_close(out.scores, teacher)
    with pytest.raises(ValueError, match=r"never must hold token ids in \[0, 11\)"):
        model.generate(prompt, 2, never=[11])
