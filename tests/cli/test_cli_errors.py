"""Bad input: each gives a one-line error naming the problem, a non-zero exit code (2 for bad usage
or input, 1 for a failure while running), and nothing half-written."""
from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path

import pytest


def one_line_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnkit")
    return lines[0]


def fails(cli, code, *args, match=()):
    got, out, err = cli(*args)
    assert got == code, (got, out, err)
    line = one_line_error(err)
    for m in (match if isinstance(match, tuple) else (match,)):
        assert m in line, line
    return line


LM = ("--max-steps", "3", "--batch_size", "4", "--bptt", "8", "--hidden_size", "8", "--embed_size", "8", "--no-progress")


def test_missing_and_empty_files(cli, tmp_path):
    fails(cli, 2, "train", "lm", "--data", tmp_path / "nope.txt", "--out", tmp_path / "o", match="nope.txt: no such file")
    (tmp_path / "empty.csv").write_text("   \n")
    fails(cli, 2, "train", "classify", "--data", tmp_path / "empty.csv", "--out", tmp_path / "o", match="file is empty")


def test_non_utf8_names_the_line(cli, tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine line\nsecond\nbad \xff\xfe here\n")
    fails(cli, 2, "train", "lm", "--data", tmp_path / "bad.txt", "--out", tmp_path / "o", match=("bad.txt:3:", "UTF-8"))


def test_csv_without_label_column(cli, tmp_path):
    (tmp_path / "x.csv").write_text("text,category\nhello,a\nbye,b\n")
    fails(cli, 2, "train", "classify", "--data", tmp_path / "x.csv", "--out", tmp_path / "o", match="no 'label' column")


def test_conll_wrong_column_count(cli, tmp_path):
    (tmp_path / "x.conll").write_text("John NNP B-PER\nran VBD O\n\nMary B-PER\n")
    fails(cli, 2, "train", "tag", "--data", tmp_path / "x.conll", "--out", tmp_path / "o",
          match=("x.conll:4:", "expected 3 columns"))


@pytest.mark.parametrize("bad", ["nan", "abc"])
def test_series_with_nan_or_text(cli, tmp_path, bad):
    (tmp_path / "s.csv").write_text("value\n1.0\n2.0\n" + bad + "\n4.0\n")
    fails(cli, 2, "train", "forecast", "--data", tmp_path / "s.csv", "--out", tmp_path / "o",
          match=("s.csv:4:", "expected a finite number"))


def test_parallel_unequal_line_counts(cli, tmp_path):
    (tmp_path / "a.src").write_text("a b\nc d\ne f\n")
    (tmp_path / "a.tgt").write_text("b a\nd c\n")
    line = fails(cli, 2, "train", "translate", "--data", tmp_path / "a.src", tmp_path / "a.tgt", "--out", tmp_path / "o")
    assert "3" in line and "2" in line and "line" in line


def test_unknown_task_and_options(cli, tmp_path):
    fails(cli, 2, "train", "dance", "--data", "x", match="invalid choice: 'dance'")
    fails(cli, 2, "train", "lm", "--data", "builtin:pydoc", "--hiden_size", "3", match="unknown option --hiden_size")
    fails(cli, 2, "train", "lm", "--data", "builtin:pydoc", "--hidden_size", "big", match="--hidden_size must be an integer")
    fails(cli, 2, "train", "lm", "--data", "builtin:pydoc", "--cell", "tree", match="--cell must be one of")
    fails(cli, 2, "train", "lm", "--data", "builtin:names", match="'rnnkit train classify'")
    fails(cli, 2, "frobnicate", match="invalid choice")
    (tmp_path / "c.toml").write_text("[model]\nhidden_size = 'wide'\n")
    fails(cli, 2, "train", "lm", "--data", "builtin:pydoc", "--config", tmp_path / "c.toml", match="hidden_size")
    (tmp_path / "c.toml").write_text("[train]\nhidden_size = 8\n")
    fails(cli, 2, "train", "lm", "--data", "builtin:pydoc", "--config", tmp_path / "c.toml", match="belongs in [model]")


def test_toml_config_and_overrides(cli, files, tmp_path):
    (tmp_path / "c.toml").write_text("lr = 0.01\n[model]\nhidden_size = 12\n[data]\nbptt = 8\n")
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--config", tmp_path / "c.toml",
                       "--hidden_size=10", "--out", tmp_path / "o", *LM[:6], "--no-progress")
    assert code == 0, err
    code, info, _ = cli("info", tmp_path / "o" / "checkpoint", "--json")
    info = json.loads(info)
    assert info["model_config"]["hidden_size"] == 10 and info["train_config"]["lr"] == 0.01
    assert info["task"]["data"]["bptt"] == 8


def test_a_config_file_with_a_byte_order_mark_or_that_cannot_be_read(cli, files, tmp_path):
    """Windows Notepad saves a byte-order mark, which TOML's parser refused as 'Invalid statement'; a name the
    system refuses was Python's OSError with exit 1."""
    from rnnkit.train.options import read_toml

    (tmp_path / "bom.toml").write_bytes("\ufefflr = 0.01\n".encode("utf-8"))
    assert read_toml(tmp_path / "bom.toml") == {"lr": 0.01}
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--config", tmp_path / ("c" * 300 + ".toml"),
          match=("config file cannot be read", "too long"))
    fails(cli, 2, "train", "lm", "--data", tmp_path / ("d" * 300 + ".txt"), match=("cannot be read", "too long"))


@pytest.fixture
def lm_run(cli, files, tmp_path):
    out = tmp_path / "lm"
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", out, *LM)
    assert code == 0, err
    return out


def test_checkpoint_of_another_model_and_newer_format(cli, files, tmp_path, lm_run):
    out = tmp_path / "cls"
    assert cli("train", "classify", "--data", files / "train.csv", "--max-steps", "2", "--out", out,
               "--no-progress")[0] == 0
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", tmp_path / "x", "--resume", out / "checkpoint",
          *LM, match="holds a 'classifier' model, expected 'language_model'")
    # found before the data is read (here there is none to read)
    fails(cli, 2, "train", "lm", "--data", tmp_path / "absent.txt", "--out", tmp_path / "x", "--resume",
          out / "checkpoint", *LM, match="holds a 'classifier' model, expected 'language_model'")
    fails(cli, 2, "generate", out / "checkpoint", match="generate needs a language model")
    snap = next(p for p in (lm_run / "checkpoint").iterdir() if p.is_dir())
    header = json.loads((snap / "config.json").read_text())
    header["format_version"] = 99
    (snap / "config.json").write_text(json.dumps(header))
    fails(cli, 2, "evaluate", lm_run / "checkpoint", "--data", files / "train.txt", match="format version 99, newer")


def test_truncated_checkpoint(cli, files, lm_run):
    snap = next(p for p in (lm_run / "checkpoint").iterdir() if p.is_dir())
    weights = snap / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    fails(cli, 2, "info", lm_run / "checkpoint", match="model.safetensors is truncated")
    fails(cli, 2, "generate", lm_run / "checkpoint", match="truncated")


def test_resume_with_changed_config(cli, files, lm_run):
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", lm_run, "--resume", *LM[:-3], "--lr", "0.5",
          "--embed_size", "8", match=("config changed", "lr"))
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", lm_run, *LM, match="already holds a checkpoint")
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", lm_run / "none", "--resume", *LM,
          match="checkpoint not found")


def test_overwrite_starts_afresh_and_drops_the_old_runs_snapshots(cli, files, lm_run, tmp_path, monkeypatch):
    """--overwrite: once the new run's data and model are built, the old checkpoint/ and best/ go (best/
    stayed, another run's model, until the new run's first evaluation); with --resume it is refused."""
    from rnnkit.train import Trainer

    assert (lm_run / "best").is_dir() and (lm_run / "checkpoint").is_dir()
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", lm_run, *LM, "--resume", "--overwrite",
          match="give one of them")
    class Looked(BaseException):  # (not an Exception: the command would print it as an error)
        pass

    def look(self, resume=None):
        raise Looked({"best": (lm_run / "best").exists(), "checkpoint": (lm_run / "checkpoint").exists()})

    monkeypatch.setattr(Trainer, "fit", look)  # where the training would start
    with pytest.raises(Looked) as seen:
        cli("train", "lm", "--data", files / "train.txt", "--out", lm_run, *LM, "--overwrite")
    assert seen.value.args[0] == {"best": False, "checkpoint": False}


def test_full_disk_during_save_keeps_previous_checkpoint(cli, files, lm_run, monkeypatch):
    from rnnkit.train import checkpoint as ck

    before = json.loads(cli("info", lm_run / "checkpoint", "--json")[1])

    def full(path, data):
        path.write_bytes(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "_write_bytes", full)
    fails(cli, 1, "train", "lm", "--data", files / "train.txt", "--out", lm_run, "--resume", *LM[2:], "--max-steps", "6",
          match="No space left on device; the previous checkpoint is unchanged")
    monkeypatch.undo()
    after = json.loads(cli("info", lm_run / "checkpoint", "--json")[1])
    assert after["step"] == before["step"] == 3
    assert not [p for p in (lm_run / "checkpoint").iterdir() if p.name.startswith(".tmp")]


def test_diverging_run_stops_with_message(cli, files, tmp_path):
    fails(cli, 1, "train", "lm", "--data", files / "train.txt", "--out", tmp_path / "o", *LM[2:], "--max-steps", "40",
          "--lr", "1e38", "--clip_norm", "0", "--optimizer", "sgd", "--momentum", "0", match="diverged")


def test_generate_gives_the_length_asked_for_without_special_tokens(cli, lm_run):
    """A weakly trained model gives the special tokens it never saw some mass: sampled, they printed as
    "<pad>"/"<unk>" or ended the text early at "<eos>" (183 characters for --length 500)."""
    for seed in range(4):
        code, out, err = cli("generate", lm_run / "checkpoint", "--prompt", "ab", "--length", "300", "--temperature",
                             "3", "--seed", str(seed))
        assert code == 0, err
        text = out[:-1]  # (print's newline)
        assert len(text) == 2 + 300 and not any(s in text for s in ("<pad>", "<unk>", "<bos>", "<eos>")), text
    fails(cli, 2, "generate", lm_run / "checkpoint", "--seed", str(2**64), match="--seed must be an int from 0 to")
    fails(cli, 2, "generate", lm_run / "checkpoint", "--seed", "-1", match="--seed must be an int from 0 to")


def test_bad_generate_and_predict_input(cli, lm_run, tmp_path, monkeypatch):
    import io
    import sys

    fails(cli, 2, "generate", lm_run / "checkpoint", "--temperature", "-1", match="--temperature must be a finite number >= 0")
    fails(cli, 2, "generate", lm_run / "checkpoint", "--top-p", "1.5", match="--top-p must be in (0, 1]")
    fails(cli, 2, "predict", lm_run / "checkpoint", "--input", tmp_path / "missing.txt", match="no such file")
    fails(cli, 2, "predict", lm_run / "checkpoint", "--steps", "3", match="--steps and --method are forecast options")
    fails(cli, 2, "predict", lm_run / "checkpoint", "--steps", "1", match="--steps and --method are forecast options")
    fails(cli, 2, "predict", lm_run / "checkpoint", "--method", "autoregressive", match="are forecast options")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\n")))
    fails(cli, 2, "predict", lm_run / "checkpoint", match="stdin:2: bytes that are not UTF-8")


def test_csv_header_with_other_column_names(cli, tmp_path):
    rows = "".join(f"some text {i},{('pos', 'neg')[i % 2]}\n" for i in range(200))
    (tmp_path / "reviews.csv").write_text("review,sentiment\n" + rows)
    small = ("--max-steps", "2", "--hidden_size", "8", "--embed_size", "8", "--no-progress")
    fails(cli, 2, "train", "classify", "--data", tmp_path / "reviews.csv", "--out", tmp_path / "a", *small,
          match=("reviews.csv:1: the first row looks like a header", "'sentiment' occurs on no other row",
                 "rename the columns to text and label (or, to train, pass --text_column review --label_column "
                 "sentiment)"))
    code, _, err = cli("train", "classify", "--data", tmp_path / "reviews.csv", "--out", tmp_path / "b", *small,
                       "--text_column", "review", "--label_column", "sentiment")
    assert code == 0, err
    from rnnkit.train.tasks import load_trained

    assert load_trained(tmp_path / "b" / "checkpoint")[0].labels == ["neg", "pos"]
    # A file without a header whose first row's label occurs once is an example where the model knows that label:
    # evaluate (and --valid) read it; it was refused as a header with other names.
    (tmp_path / "test.csv").write_text("some words,pos\nother words,neg\nmore words,neg\n")
    code, _, err = cli("evaluate", tmp_path / "b" / "checkpoint", "--data", tmp_path / "test.csv", "--json")
    assert code == 0, err
    (tmp_path / "train.csv").write_text("text,label\n" + rows)
    code, _, err = cli("train", "classify", "--data", tmp_path / "train.csv", "--valid", tmp_path / "test.csv", "--out",
                       tmp_path / "c", *small)
    assert code == 0, err


def test_caption_npz_channels_first_and_corrupt(cli, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 1, 8, 10), dtype=np.uint8)  # (N, C, H, W)
    np.savez(tmp_path / "caps.npz", images=images, captions=np.array(["one two", "three"] * 20))
    out = tmp_path / "cap"
    code, _, err = cli("train", "caption", "--data", tmp_path / "caps.npz", "--out", out, "--max-steps", "2",
                       "--hidden_size", "8", "--embed_size", "8", "--conv_channels", "4,4", "--feature_size", "8",
                       "--no-progress")
    assert code == 0, err
    config = json.loads(cli("info", out / "checkpoint", "--json")[1])["model_config"]
    assert config["in_channels"] == 1 and list(config["image_size"]) == [8, 10]
    (tmp_path / "bad.npz").write_bytes((tmp_path / "caps.npz").read_bytes()[:500])
    for args in (("train", "caption", "--data", tmp_path / "bad.npz", "--out", tmp_path / "x"),
                 ("evaluate", out / "checkpoint", "--data", tmp_path / "bad.npz")):
        fails(cli, 2, *args, match=("bad.npz: not a readable .npz archive", "not a zip file"))


@pytest.fixture
def cls_run(cli, files, tmp_path):
    out = tmp_path / "cls"
    code, _, err = cli("train", "classify", "--data", files / "train.csv", "--out", out, "--max-steps", "2",
                       "--hidden_size", "8", "--embed_size", "8", "--no-progress")
    assert code == 0, err
    (tmp_path / "in.txt").write_text("good film\n")
    return out / "checkpoint"


def edited_copy(ckpt, dest, name, edit):
    """A copy of checkpoint ``ckpt`` at ``dest`` whose JSON file ``name`` went through ``edit`` (or was deleted),
    written as if it had been so from the start: config.json records no digest for it (an edit the digest
    finds is tested in tests/train/test_checkpoint.py; these tests are of the checks behind it)."""
    import shutil

    shutil.copytree(ckpt, dest)
    snap = next(p for p in dest.iterdir() if p.is_dir())
    if edit is None:
        (snap / name).unlink()
    else:
        data = json.loads((snap / name).read_text())
        edit(data)
        (snap / name).write_text(json.dumps(data))
    header = json.loads((snap / "config.json").read_text())
    header.get("sha256", {}).pop(name, None)
    (snap / "config.json").write_text(json.dumps(header))
    return dest


def test_checkpoint_without_vocab_json(cli, cls_run, tmp_path):
    ck = edited_copy(cls_run, tmp_path / "novocab", "vocab.json", None)
    fails(cli, 2, "predict", ck, "--input", tmp_path / "in.txt",
          match=("is incomplete: vocab.json is missing",
                 "expected the files config.json lists: model.safetensors, trainer.json, "
                 "trainer.safetensors, vocab.json; found config.json, model.safetensors"))
    code, out, err = cli("info", ck, "--json")  # info shows what is there
    assert code == 0, err
    assert json.loads(out)["files"]["vocab.json"] == "missing"


def test_checkpoint_vocab_json_that_does_not_fit_the_model(cli, cls_run, tmp_path):
    def fewer_labels(v):
        v["labels"], v["majority"] = v["labels"][:1], v["labels"][0]

    def fewer_tokens(v):
        v["tokenizer"]["vocab"]["tokens"].pop()

    def no_tokenizer(v):
        del v["tokenizer"]

    predict = ("predict", "--input", tmp_path / "in.txt")
    ck = edited_copy(cls_run, tmp_path / "a", "vocab.json", fewer_labels)
    fails(cli, 2, predict[0], ck, *predict[1:],
          match="vocab.json does not match the model: it gives num_classes = 1, the model has num_classes = 2")
    ck = edited_copy(cls_run, tmp_path / "b", "vocab.json", fewer_tokens)
    fails(cli, 2, predict[0], ck, *predict[1:], match=("vocab.json does not match the model: it gives vocab_size = ",
                                                       "the model has vocab_size = "))
    ck = edited_copy(cls_run, tmp_path / "c", "vocab.json", no_tokenizer)
    fails(cli, 2, predict[0], ck, *predict[1:],
          match="vocab.json lacks the entry 'tokenizer' (its top-level keys: ['labels', 'majority'])")


def test_checkpoint_weight_shapes_that_do_not_fit_its_config(cli, cls_run, tmp_path):
    ck = edited_copy(cls_run, tmp_path / "h", "config.json", lambda h: h["model_config"].update(hidden_size=9))
    fails(cli, 2, "predict", ck, "--input", tmp_path / "in.txt",
          match="does not match its model: rnn.weight_ih_l0 has shape (32, 8) in the file, the model expects (36, 8)")


def test_prompt_values_keep_their_underscores_and_stdin_reads_as_a_file_does(cli, lm_run, files, tmp_path,
                                                                              monkeypatch):
    """Every argv item that began with -- had its underscores made hyphens, values too ("-- my_var = 1"); a
    byte-order mark at a later line's start was dropped from an --input file but not from stdin; predict
    did not strip a line where the readers strip a row (evaluate and predict disagreed on "  text  ")."""
    import io
    import sys

    code, out, err = cli("generate", lm_run / "checkpoint", "--prompt", "-- my_var = 1", "--temperature", "0",
                         "--length", "3")
    assert code == 0 and out.startswith("-- my_var = 1"), (out, err)
    fails(cli, 2, "generate", lm_run / "checkpoint", "--temperature", "0", "--top-k", "5",
          match="--temperature 0 is greedy")
    body = "ab ab\n\ufeffab ab\n".encode()
    (tmp_path / "in.txt").write_bytes(body)
    code, from_file, err = cli("predict", lm_run / "checkpoint", "--input", tmp_path / "in.txt")
    assert code == 0, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body)))
    code, from_stdin, err = cli("predict", lm_run / "checkpoint")
    assert code == 0 and from_stdin == from_file and len(set(from_file.split())) == 1, (from_file, from_stdin)
    cls = tmp_path / "cls"
    assert cli("train", "classify", "--data", files / "train.csv", "--max-steps", "2", "--out", cls, "--tokenizer",
               "char", "--hidden_size", "8", "--embed_size", "8", "--no-progress")[0] == 0
    (tmp_path / "c.txt").write_text("a fine film\n   a fine film   \n")
    code, out, err = cli("predict", cls / "checkpoint", "--input", tmp_path / "c.txt")
    assert code == 0 and len(set(out.split("\n")[:2])) == 1, (out, err)


def test_a_checkpoint_whose_task_entry_is_not_an_object_is_named(cli, lm_run):
    import json

    from rnnkit.train.checkpoint import resolve

    config = resolve(lm_run / "checkpoint") / "config.json"
    header = json.loads(config.read_text())
    header["task"] = "lm"
    config.write_text(json.dumps(header))
    fails(cli, 2, "generate", lm_run / "checkpoint", match='config.json\'s "task" must be an object')


def test_an_output_that_cannot_be_written_is_named(cli, lm_run, monkeypatch):
    """A full disk gave 'OSError: [Errno 28] No space left on device' without the file it was writing."""
    import io
    import sys

    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ab ab\n")))
    fails(cli, 1, "predict", lm_run / "checkpoint", "--output", "/dev/full",
          match="--output /dev/full: cannot write the predictions (No space left on device)")


def test_a_newer_versions_checkpoint_names_both_versions(cli, cls_run, tmp_path):
    """A field a newer rnnkit added reads as a mismatch; the message says which version wrote the file."""
    def newer(h):
        h["model_config"]["gate_noise"] = 0.1
        h["rnnkit_version"] = "9.0.0"

    ck = edited_copy(cls_run, tmp_path / "v", "config.json", newer)
    fails(cli, 2, "predict", ck, "--input", tmp_path / "in.txt",
          match=("does not match its model: ", "'gate_noise'", "written by rnnkit 9.0.0; this is rnnkit 0.1.0: a newer version wrote it"))
    ck = edited_copy(cls_run, tmp_path / "w", "config.json", lambda h: h["model_config"].update(gate_noise=0.1))
    assert "written by" not in fails(cli, 2, "predict", ck, "--input", tmp_path / "in.txt", match="'gate_noise'")


def test_the_layers_variant_options_train_and_generate_from_the_command_line(cli, files, tmp_path):
    """Every task takes the layers' options (RecurrentOptions) as --keys; the checkpoint keeps them, generation
    steps a layer-normalised stack, and a pair the model refuses is a usage error naming both."""
    out = tmp_path / "awd"
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", out, *LM, "--num_layers", "2",
                       "--dropout", "0.3", "--dropout_kind", "locked", "--weight_drop", "0.5", "--layer_norm", "yes",
                       "--zoneout", "0.2")
    assert code == 0, err
    code, _, err = cli("diagnose", "saturation", "--checkpoint", out / "checkpoint", "--text", "the cat sat")
    assert code == 0, err  # (zoneout: refused as a function the stepped cells did not compute, exit 1)
    info = json.loads(cli("info", out / "checkpoint", "--json")[1])
    assert {k: info["model_config"][k] for k in ("dropout_kind", "weight_drop", "layer_norm")} == {
        "dropout_kind": "locked", "weight_drop": 0.5, "layer_norm": True}
    code, text, err = cli("generate", out / "checkpoint", "--length", "20", "--seed", "1")
    assert code == 0 and len(text.rstrip("\n")) > 0, err
    help_text = cli("train", "lm", "--help")[1]
    assert "--dropout_kind             naive|locked|variational | None" in help_text
    assert help_text.index("--engine") < help_text.index("--dropout_kind")  # the model's own options first
    fails(cli, 2, "train", "translate", "--data", "builtin:reverse", "--out", tmp_path / "t", "--weight_drop", "0.2",
          "--teacher_forcing_ratio", "0.5", "--max-steps", "1", match=("Seq2SeqConfig", "scheduled sampling"))
    fails(cli, 2, "train", "classify", "--data", files / "train.csv", "--out", tmp_path / "c", "--cell", "gru",
          "--forget_bias", "1", match=("forget_bias", "'gru' cell"))
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", tmp_path / "n", *LM, "--engine", "native",
          "--zoneout", "0.1", match=("engine='native'", "cannot run zoneout"))
    assert not (tmp_path / "n").exists()  # (refused before the data was read, nothing written)


def test_tag_predict_splits_words_as_the_training_file_did(cli, tmp_path, monkeypatch):
    """A no-break space stays inside a CoNLL token ("New York" one word); predict split at it (str.split),
    answering four tags for a sentence of three tokens."""
    import io

    sentence = "Mary B-PER\nvisits O\nNew\u00a0York B-LOC\n\n"
    (tmp_path / "nb.conll").write_text("# sent_id = 1\n" + sentence * 20, encoding="utf-8")
    code, _, err = cli("train", "tag", "--data", tmp_path / "nb.conll", "--valid", tmp_path / "nb.conll", "--out",
                       tmp_path / "r", "--max-steps", "2", "--hidden_size", "8", "--embed_size", "8", "--no-progress")
    assert code == 0, err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("Mary visits New\u00a0York\n".encode())))
    code, out, err = cli("predict", tmp_path / "r" / "checkpoint")
    assert code == 0 and len(out.split()) == 3, (out, err)


def test_a_whole_split_problem_names_the_training_file(cli, tmp_path):
    """'the training text has 3 tokens, too few for 32 streams' named no file, where the validation file's was named."""
    (tmp_path / "tiny.txt").write_text("ab\n")
    fails(cli, 2, "train", "lm", "--data", tmp_path / "tiny.txt", "--valid", tmp_path / "tiny.txt", "--out",
          tmp_path / "o", "--max-steps", "1", match=("tiny.txt: the training text has 3 tokens", "--batch_size"))


def test_a_first_save_that_died_leaves_a_folder_a_new_run_takes(cli, files, tmp_path, monkeypatch):
    """A full disk (or a SIGKILL) during a run's first save left a checkpoint/ that neither a fresh run ('already
    holds a checkpoint') nor --resume ('no config.json') accepted; the message said a previous checkpoint was kept."""
    from rnnkit.train import checkpoint as ck

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "first"
    monkeypatch.setattr(ck, "_write_bytes", full)
    fails(cli, 1, "train", "lm", "--data", files / "train.txt", "--out", out, *LM,
          match="No space left on device; no checkpoint was saved")
    monkeypatch.undo()
    (out / "checkpoint" / ".tmp-step-00000002-999999999-abcd1234").mkdir(parents=True)  # a writer killed mid-save
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", out, *LM)
    assert code == 0, err
    assert not [p for p in (out / "checkpoint").iterdir() if p.name.startswith(".tmp")]  # cleaned after a save


def test_resume_finds_a_snapshot_whose_pointer_was_never_written(cli, files, lm_run):
    """Killed between a snapshot's rename (which makes it whole) and the pointer's: the snapshot is the checkpoint."""
    (lm_run / "checkpoint" / "latest").unlink()
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", lm_run, "--resume", *LM[2:],
                       "--max-steps", "5")
    assert code == 0, err
    assert json.loads(cli("info", lm_run / "checkpoint", "--json")[1])["step"] == 5


def test_resume_into_another_runs_folder_is_refused(cli, files, lm_run, tmp_path):
    """--resume CKPT --out DIR replaced the run already in DIR and mixed its metrics with CKPT's."""
    other = tmp_path / "other"
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", other, *LM, "--seed", "7")
    assert code == 0, err
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", other, "--resume", lm_run / "checkpoint",
          *LM[2:], "--max-steps", "5", match=("holds another run's checkpoint", "would replace it"))
    fresh = tmp_path / "fresh"  # into a new folder it continues there
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", fresh, "--resume", lm_run / "checkpoint",
                       *LM[2:], "--max-steps", "5")
    assert code == 0, err


def test_resume_refuses_other_data_files_even_with_the_same_vocabulary(cli, files, lm_run, tmp_path):
    """The vocabulary was the only check of the data: another order of the same text, or any other --valid file,
    resumed and continued as a different run. The files' contents are compared (a moved copy still resumes)."""
    text = (files / "train.txt").read_text()
    words = text.split()
    (tmp_path / "shuffled.txt").write_text(" ".join(reversed(words)) + "\n")
    fails(cli, 2, "train", "lm", "--data", tmp_path / "shuffled.txt", "--out", lm_run, "--resume", *LM[2:],
          "--max-steps", "5", match=("config changed", "the --data files (their contents differ"))
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--valid", files / "train.txt", "--out", lm_run,
          "--resume", *LM[2:], "--max-steps", "5", match="the --valid files (0 → 1)")
    (tmp_path / "moved.txt").write_text(text)
    code, _, err = cli("train", "lm", "--data", tmp_path / "moved.txt", "--out", lm_run, "--resume", *LM[2:],
                       "--max-steps", "5")
    assert code == 0, err


def test_edited_config_or_trainer_state_is_a_checkpoint_error(cli, files, lm_run, tmp_path):
    """config.json has no digest of its own: a model_config that is not an object was a TypeError from sorting its
    keys (exit 1); a best of null in a trainer.json without digests crashed at the first evaluation."""
    import shutil

    for name, file, edit, match in [("m", "config.json", lambda h: h.update(model_config=[1]),
                                     ("\"model_config\" must be an object",)),
                                    ("b", "trainer.json", lambda t: t.update(best=None),
                                     ("is damaged", "'best' must be an object"))]:
        run = tmp_path / name
        shutil.copytree(lm_run, run)
        edited_copy(lm_run / "checkpoint", run / "checkpoint.edited", file, edit)
        shutil.rmtree(run / "checkpoint")
        (run / "checkpoint.edited").rename(run / "checkpoint")
        fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", run, "--resume", *LM[2:], "--max-steps",
              "5", match=match)


def test_a_checkpoint_from_before_a_config_field_existed_resumes(cli, files, lm_run, tmp_path):
    """The model's recurrent options (and any field added later) are absent from an older checkpoint's config:
    read as '<unset>', they refused every older run's --resume as a changed config. Absent means the default."""
    import shutil

    from rnnkit.models.config import RecurrentOptions

    run = tmp_path / "old"
    shutil.copytree(lm_run, run)
    newer = {f.name for f in dataclasses.fields(RecurrentOptions)}
    edited_copy(lm_run / "checkpoint", run / "checkpoint.old", "config.json",
                lambda h: [h["model_config"].pop(k) for k in newer])
    shutil.rmtree(run / "checkpoint")
    (run / "checkpoint.old").rename(run / "checkpoint")
    snap = next(p for p in (run / "checkpoint").iterdir() if p.is_dir())
    trainer = json.loads((snap / "trainer.json").read_text())
    trainer["train_config"].pop("probe_every")
    (snap / "trainer.json").write_text(json.dumps(trainer))
    header = json.loads((snap / "config.json").read_text())
    header["sha256"].pop("trainer.json")
    (snap / "config.json").write_text(json.dumps(header))
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", run, "--resume", *LM[2:], "--max-steps", "5")
    assert code == 0, err
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", run, "--resume", *LM[2:], "--max-steps", "6",
          "--zoneout", "0.1", match="model zoneout 0.0 → 0.1")


def test_a_run_from_before_nfc_resumes_reading_text_as_it_did(cli, files, lm_run, tmp_path):
    """Tokenizers saved before rnnkit normalised text to NFC have no 'nfc' option: a resumed run refitted them
    with NFC, so its later steps (and its model) read decomposed text otherwise than the first leg."""
    import shutil

    run = tmp_path / "old"
    shutil.copytree(lm_run, run)
    edited_copy(lm_run / "checkpoint", run / "checkpoint.old", "vocab.json",
                lambda v: v["tokenizer"]["options"].pop("nfc"))
    shutil.rmtree(run / "checkpoint")
    (run / "checkpoint.old").rename(run / "checkpoint")
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", run, "--resume", *LM[2:], "--max-steps", "5")
    assert code == 0, err
    from rnnkit.train.checkpoint import load_checkpoint

    assert load_checkpoint(run / "checkpoint", trainer=False).vocab["tokenizer"]["options"]["nfc"] is False
    assert load_checkpoint(lm_run / "checkpoint", trainer=False).vocab["tokenizer"]["options"]["nfc"] is True
