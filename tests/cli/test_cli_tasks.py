"""Every ``rnnkit train`` task runs end to end on small data in seconds and beats its trivial
baseline; then evaluate, predict, generate and info work on what it wrote."""
from __future__ import annotations

import json

import pytest
from test_cli_errors import fails


def train(cli, tmp_path, task, *args):
    out = tmp_path / task
    code, stdout, err = cli("train", task, *args, "--out", out, "--no-progress", "--json")
    assert code == 0, err
    return out, json.loads(stdout.strip().splitlines()[-1])


def test_lm(cli, files, tmp_path):
    out, m = train(cli, tmp_path, "lm", "--data", files / "train.txt", "--max-steps", "60", "--batch_size", "8",
                   "--bptt", "32", "--hidden_size", "48", "--embed_size", "16", "--lr", "0.01")
    assert m["bits_per_char"] < 0.8 * m["unigram_bits_per_char"]
    code, text, _ = cli("generate", out / "checkpoint", "--prompt", "the ", "--length", "40", "--temperature", "0.5",
                        "--seed", "1")
    assert code == 0 and text.startswith("the ") and len(text) > 40
    code, greedy, _ = cli("generate", out / "checkpoint", "--prompt", "the", "--length", "20", "--temperature", "0")
    assert code == 0
    # temperature 0 is greedy: no seed changes it, while sampling at 1 depends on the seed
    def generated(temperature: str, seed: str) -> str:
        return cli("generate", out / "checkpoint", "--prompt", "the", "--length", "40", "--temperature", temperature,
                   "--seed", seed)[1]

    assert generated("0", "1") == generated("0", "2")
    assert generated("0", "1").startswith(greedy.rstrip("\n"))  # 40 greedy characters extend the 20 above
    assert generated("1", "1") != generated("1", "2")
    code, top1, _ = cli("generate", out / "checkpoint", "--prompt", "the", "--length", "40", "--top-k", "1",
                        "--seed", "3")
    assert code == 0 and top1 == generated("0", "1")  # only the most likely token left: greedy
    # predict on a language model: each line's bits per token, lower on text like the training data
    (tmp_path / "lines.txt").write_text("the cat sat on the mat\n\nzqxj vwkq zzqx jjqv\na\n")
    code, bits, err = cli("predict", out / "checkpoint", "--input", tmp_path / "lines.txt")
    assert code == 0, err
    familiar, blank, noise, one = bits.split("\n")[:4]
    assert 0 < float(familiar) < float(noise)
    assert blank == one == ""  # nothing to score: an empty line back, as every task answers a blank line
    code, scores, _ = cli("evaluate", out / "checkpoint", "--data", files / "train.txt", "--json")
    assert code == 0 and json.loads(scores)["bits_per_char"] < 3


def test_classify(cli, files, tmp_path, monkeypatch):
    import io
    import sys

    out, m = train(cli, tmp_path, "classify", "--data", files / "train.csv", "--max-steps", "60",
                   "--hidden_size", "32", "--embed_size", "16", "--lr", "0.01", "--eval_every", "30")
    assert m["accuracy"] > m["majority_accuracy"] + 0.15 and m["accuracy"] > 0.8
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"really good film\nthe food was awful\n")))
    code, pred, _ = cli("predict", out / "best")
    assert code == 0 and pred.splitlines() == ["pos", "neg"]
    code, info, _ = cli("info", out / "checkpoint", "--json")
    info = json.loads(info)
    assert info["task"]["name"] == "classify" and info["resumable"] and info["step"] == 60


def test_evaluate_on_a_built_in_dataset(cli, tmp_path):
    """The README's `rnnkit evaluate runs/sent/best --data builtin:sentiment --json`."""
    out, m = train(cli, tmp_path, "classify", "--data", "builtin:sentiment", "--max-steps", "3", "--hidden_size", "8",
                   "--embed_size", "8")
    code, scores, err = cli("evaluate", out / "best", "--data", "builtin:sentiment", "--json")
    assert code == 0, err
    scores = json.loads(scores)
    assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["majority_accuracy"] <= 1 and scores["loss"] > 0
    code, text, err = cli("evaluate", out / "best", "--data", "builtin:sentiment")
    assert code == 0, err
    assert "on builtin:sentiment" in text and f"{scores['accuracy']:.4g}" in text  # the same scores, for people


def test_tag(cli, files, tmp_path):
    out, m = train(cli, tmp_path, "tag", "--data", files / "train.conll", "--max-steps", "80", "--hidden_size", "32",
                   "--embed_size", "16", "--lr", "0.02", "--decoder", "crf")
    assert m["all_o_entity_f1"] == 0.0 and m["entity_f1"] > 0.8
    (tmp_path / "in.txt").write_text("we met mr khan in oslo\n")
    code, _, err = cli("predict", out / "checkpoint", "--input", tmp_path / "in.txt", "--output", tmp_path / "o.txt")
    assert code == 0, err
    assert (tmp_path / "o.txt").read_text() == "O O O B-PER O B-LOC\n"
    # one output line per input line: a form feed or U+2028 inside a line does not end it (str.splitlines
    # would), and a file of blank lines is answered with blank lines, as on stdin
    (tmp_path / "odd.txt").write_text("we met mr khan\x0cin oslo\nin\u2028rome\n\nmr lee\n", encoding="utf-8")
    code, pred, err = cli("predict", out / "checkpoint", "--input", tmp_path / "odd.txt")
    assert code == 0, err
    # (words split as the CoNLL reader splits tokens: at a form feed, not inside "in\u2028rome")
    assert [len(line.split()) for line in pred.split("\n")[:-1]] == [6, 1, 0, 2]
    (tmp_path / "blank.txt").write_text("\n\n\n")
    code, pred, err = cli("predict", out / "checkpoint", "--input", tmp_path / "blank.txt")
    assert code == 0 and pred == "\n\n\n", err


def test_translate(cli, tmp_path):
    out, m = train(cli, tmp_path, "translate", "--data", "builtin:reverse", "--max-steps", "100",
                   "--hidden_size", "64", "--embed_size", "32", "--lr", "0.01")
    assert m["exact_match"] > m["copy_source_exact_match"] + 0.3 and m["bleu"] > m["copy_source_bleu"]
    (tmp_path / "src.txt").write_text("1 2 3\n\n9\n")
    code, pred, err = cli("predict", out / "checkpoint", "--input", tmp_path / "src.txt")
    assert code == 0, err
    lines = pred.split("\n")
    assert lines[0].strip() and lines[1] == "" and lines[2].strip()  # a blank line is answered by a blank line


def test_forecast(cli, tmp_path, monkeypatch):
    out, m = train(cli, tmp_path, "forecast", "--data", "builtin:sine", "--max-steps", "80", "--hidden_size", "32",
                   "--window", "40", "--lr", "0.01")
    assert m["mae"] < 0.9 * m["naive_mae"]
    (tmp_path / "h.txt").write_text("0.0, 0.12, 0.25, 0.37, 0.48\n")
    code, pred, err = cli("predict", out / "checkpoint", "--input", tmp_path / "h.txt")
    assert code == 0, err
    assert 0.3 < float(pred.strip()) < 0.9  # the sine keeps rising
    # on stdin, a byte-order mark is dropped as it is from a file, and a bad line is named as stdin's
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\ufeff0.0, 0.12, 0.25, 0.37, 0.48\n".encode())))
    code, pred_stdin, err = cli("predict", out / "checkpoint")
    assert code == 0 and pred_stdin == pred, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"0.1, 0.2\nabc\n")))
    code, _, err = cli("predict", out / "checkpoint")
    assert code == 2 and "stdin:2: expected numbers, got 'abc'" in err
    # --steps N: the next N values in the input's format (fed back one at a time), the first the one-step forecast
    code, ahead, err = cli("predict", out / "checkpoint", "--input", tmp_path / "h.txt", "--steps", "3")
    assert code == 0, err
    values = [float(v) for v in ahead.split()]
    assert len(values) == 3 and values[0] == pytest.approx(float(pred.strip()), rel=1e-5)
    first_two = " ".join(ahead.split()[:2])
    (tmp_path / "h2.txt").write_text(f"0.0, 0.12, 0.25, 0.37, 0.48 {first_two}\n")  # the forecasts fed back by hand
    code, next_one, err = cli("predict", out / "checkpoint", "--input", tmp_path / "h2.txt")
    assert code == 0 and float(next_one) == pytest.approx(values[2], rel=1e-3, abs=1e-4), err
    fails(cli, 2, "predict", out / "checkpoint", "--input", tmp_path / "h.txt", "--steps", "2", "--method", "direct",
          match="--method direct forecasts at most the model's horizon, 0 steps")


def test_caption(cli, tmp_path):
    from rnnkit.data import load_builtin, write_captions
    from rnnkit.data.captions import png_bytes

    out, m = train(cli, tmp_path, "caption", "--data", "builtin:digits", "--max-steps", "100")
    assert m["exact_match"] > m["most_common_exact_match"] + 0.2 and m["bleu"] > m["most_common_bleu"] + 20
    strip = load_builtin("digits")["valid"]
    (tmp_path / "a.png").write_bytes(png_bytes((strip.images[0, 0].numpy() * 255).astype("uint8")))
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.png'}\n")
    code, pred, err = cli("predict", out / "checkpoint", "--input", tmp_path / "list.txt")
    assert code == 0, err
    assert len(pred.split()) >= 1 and set(pred.split()) <= set(strip.captions[0].split()) | {
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def test_run_length_and_seed_flags_reach_the_trainer(cli, files, tmp_path):
    """--epochs and --time-budget stop the run for their reason; --seed makes two runs identical and
    another seed makes a different one."""
    tiny = ("--data", files / "train.txt", "--batch_size", "4", "--bptt", "16", "--hidden_size", "8",
            "--embed_size", "8")
    _, m = train(cli, tmp_path / "e", "lm", *tiny, "--epochs", "1")
    assert m["stop_reason"] == "epochs"
    _, m = train(cli, tmp_path / "t", "lm", *tiny, "--time-budget", "0.5")
    assert m["stop_reason"] == "time_budget"
    runs = [train(cli, tmp_path / name, "lm", *tiny, "--max-steps", "5", "--seed", seed)[1]["loss"]
            for name, seed in (("a", "3"), ("b", "3"), ("c", "4"))]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("task,args", [
    ("lm", ["--data", "builtin:pydoc", "--tie_weights", "true", "--embed_size", "16", "--hidden_size", "16"]),
    ("forecast", ["--data", "builtin:sine", "--hidden_size", "8"]),
])
def test_info_counts_parameters_as_the_model_does(cli, tmp_path, task, args):
    """Tied weights are saved under both names and a forecaster's scaler as buffers: neither is a
    parameter (info counted 5,707 for a tied LM of 3,995)."""
    from rnnkit.train.tasks import load_trained

    out, _ = train(cli, tmp_path, task, *args, "--max-steps", "1")
    _, model, _ = load_trained(out / "checkpoint")
    code, info, err = cli("info", out / "checkpoint", "--json")
    assert code == 0, err
    assert json.loads(info)["parameters"] == sum(p.numel() for p in model.parameters())
