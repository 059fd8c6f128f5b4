"""``rnnkit train tag --chars true``: character-level word features (a char BiRNN per word) reach the
model, its size follows --char_hidden_size, and training, resume, evaluate and predict run them; without
--chars the tagger is the word-only model it always was, and its checkpoints read as before."""
from __future__ import annotations

import json

import torch

from rnnkit.data import write_conll

TINY = ("--hidden_size", "8", "--embed_size", "8", "--lr", "0.02", "--batch_size", "16")


def train(cli, out, *args):
    chars = ("--char_embed_size", "4") if "--chars" in args else ()  # (refused without --chars)
    code, stdout, err = cli("train", "tag", *TINY, *chars, *args, "--out", out, "--no-progress", "--json")
    assert code == 0, err
    return json.loads(stdout.strip().splitlines()[-1])


def info(cli, out) -> dict:
    code, text, err = cli("info", out / "checkpoint", "--json")
    assert code == 0, err
    return json.loads(text)


def trained(out):
    from rnnkit.train.tasks import load_trained

    return load_trained(out / "checkpoint")


def test_chars_build_a_char_encoder_sized_by_the_char_options(cli, files, tmp_path):
    data = ("--data", files / "train.conll", "--max-steps", "3")
    train(cli, tmp_path / "c8", *data, "--chars", "true", "--char_hidden_size", "8")
    train(cli, tmp_path / "c4", *data, "--chars", "true", "--char_hidden_size", "4")
    train(cli, tmp_path / "words", *data)
    c8, c4, words = (info(cli, tmp_path / n) for n in ("c8", "c4", "words"))
    assert c8["model_config"]["char_vocab_size"] > 4 and c8["model_config"]["char_hidden_size"] == 8
    assert c8["task"]["data"]["chars"] is True
    # the char BiRNN is in the model: more parameters than words alone, and --char_hidden_size changes them
    assert c8["parameters"] > c4["parameters"] > words["parameters"]
    task, model, _ = trained(tmp_path / "c8")
    assert model.chars is not None and model.chars.size == 16
    assert task.char_vocab is not None and len(task.char_vocab) == c8["model_config"]["char_vocab_size"]


def test_without_chars_the_tagger_has_words_only(cli, files, tmp_path):
    train(cli, tmp_path / "w", "--data", files / "train.conll", "--max-steps", "2")
    i = info(cli, tmp_path / "w")
    assert i["model_config"]["char_vocab_size"] is None
    assert "chars" not in i["task"]["data"]  # off is saved as before the option existed (old runs resume)
    task, model, _ = trained(tmp_path / "w")
    assert model.chars is None and task.char_vocab is None
    assert task.vocab_state()["chars"] is None


def test_char_options_without_chars_are_refused(cli, files, tmp_path):
    """They size features that are off: accepted, they would change nothing (the reviewer's symptom)."""
    code, _, err = cli("train", "tag", "--data", files / "train.conll", "--out", tmp_path / "o", "--max-steps", "1",
                       "--no-progress", "--hidden_size", "8", "--char_hidden_size", "8")
    assert code == 2 and "--char_hidden_size 8 sizes the character features, which are off: add --chars true" in err


def test_chars_predict_and_evaluate(cli, files, tmp_path):
    out = tmp_path / "c"
    m = train(cli, out, "--data", files / "train.conll", "--max-steps", "60", "--chars", "true",
              "--char_hidden_size", "8", "--hidden_size", "16")
    assert m["entity_f1"] > 0.5
    assert list(m)[2] == "entity_f1"  # the main metric first (after step and stop_reason), as in every task
    code, scores, err = cli("evaluate", out / "checkpoint", "--data", files / "train.conll", "--json")
    assert code == 0, err
    assert 0 <= json.loads(scores)["entity_f1"] <= 1
    # an unseen word, capitals and characters never seen in training, a word over the 32-character cap
    long_word = "Zq" + "x" * 200
    (tmp_path / "in.txt").write_text(f"we met mr Ørsted in oslo\n\n{long_word} saw Mr KHAN€ today\n",
                                     encoding="utf-8")
    code, pred, err = cli("predict", out / "checkpoint", "--input", tmp_path / "in.txt")
    assert code == 0, err
    lines = pred.split("\n")[:-1]
    assert [len(line.split()) for line in lines] == [6, 0, 5]
    assert set(pred.split()) <= {"O", "B-PER", "I-PER", "B-LOC"}


def test_chars_resume_continues_exactly(cli, files, tmp_path):
    args = ("--data", files / "train.conll", "--chars", "true", "--char_hidden_size", "4", "--eval_every", "3")
    full = train(cli, tmp_path / "full", *args, "--max-steps", "6")
    train(cli, tmp_path / "cut", *args, "--max-steps", "3")
    resumed = train(cli, tmp_path / "cut", *args, "--max-steps", "6", "--resume")
    assert resumed["step"] == full["step"] == 6
    a, b = trained(tmp_path / "full")[1].state_dict(), trained(tmp_path / "cut")[1].state_dict()
    assert any(k.startswith("chars.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["entity_f1"] == full["entity_f1"]
    # resuming without --chars is a changed data option, not a silent switch to words only
    code, _, err = cli("train", "tag", *TINY, *args[:2], "--eval_every", "3",
                       "--max-steps", "8", "--out", tmp_path / "cut", "--resume", "--no-progress")
    assert code == 2 and "config changed" in err and "chars" in err, err


def test_checkpoint_without_a_chars_entry_still_loads(cli, files, tmp_path):
    """vocab.json from before --chars (no "chars" key) reads as no character features."""
    out = tmp_path / "old"
    train(cli, out, "--data", files / "train.conll", "--max-steps", "2")
    from rnnkit.train.checkpoint import resolve

    vocab = resolve(out / "checkpoint") / "vocab.json"
    state = json.loads(vocab.read_text())
    del state["chars"]
    vocab.write_text(json.dumps(state))
    config = vocab.parent / "config.json"  # (an old checkpoint has no digests either)
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "sha256"}))
    (tmp_path / "in.txt").write_text("we met mr khan\n")
    code, pred, err = cli("predict", out / "checkpoint", "--input", tmp_path / "in.txt")
    assert code == 0, err
    assert len(pred.split()) == 4
    train(cli, out, "--data", files / "train.conll", "--max-steps", "3", "--resume")


def test_char_batches_are_capped_padded_and_shard_by_rows(tmp_path):
    from rnnkit.train.tasks.tag import MAX_WORD_CHARS, TagData, TagTask

    sents = [(["Mr", "x" * 100, "in", "Oslo"], ["O", "B-PER", "O", "B-LOC"]), (["we", "met"], ["O", "O"])] * 4
    path = tmp_path / "t.conll"
    write_conll(path, sents)
    data = TagData(chars=True, lowercase=True)
    task = TagTask(data, batch_size=8)
    train_set = TagTask.read([str(path)], data)
    task.fit(train_set)
    task.set_data(train_set, train_set)
    assert "M" in task.char_vocab and "O" in task.char_vocab  # original case, though the words are lowercased
    assert task.derived_config()["char_vocab_size"] == len(task.char_vocab)
    (batch,) = task.train_batches(0)
    B, T = batch["x"].shape
    assert batch["chars"].shape == (B, T, MAX_WORD_CHARS) and batch["char_lengths"].shape == (B, T)
    long_rows = batch["lengths"] == 4
    assert batch["char_lengths"][long_rows].tolist() == [[2, MAX_WORD_CHARS, 2, 4]] * int(long_rows.sum())
    short = ~long_rows
    assert batch["char_lengths"][short].tolist() == [[2, 3, 1, 1]] * int(short.sum())  # 1 at padded words
    assert int(batch["chars"][short][:, 2:].abs().sum()) == 0  # padded words are all 0
    half = task.shard(batch, 1, 2)
    assert half["chars"].shape[0] == half["x"].shape[0] == half["char_lengths"].shape[0] == B - B // 2
    assert torch.equal(half["chars"], batch["chars"][B // 2:])


def test_characters_seen_once_train_the_unknown_character():
    """A character used once in the training words is <unk> there, so <unk>'s embedding is trained on the
    rare characters instead of staying at its random start for every character unseen in training."""
    from rnnkit.data.vocab import UNK
    from rnnkit.train.tasks.tag import TagData, TagTask

    sents = [(["Zoë", "met", "Bo"], ["B-PER", "O", "B-PER"]), (["Bo", "met", "me"], ["B-PER", "O", "O"])]
    task = TagTask(TagData(chars=True), batch_size=2)
    task.fit(sents)
    task.set_data(sents, sents)
    assert "Z" not in task.char_vocab and "ë" not in task.char_vocab and "o" in task.char_vocab
    (batch,) = task.train_batches(0)
    zoe = batch["chars"][batch["x"][:, 0] == task.words.id("Zoë")][0, 0, :3]
    assert zoe.tolist() == [UNK, task.char_vocab.id("o"), UNK]
