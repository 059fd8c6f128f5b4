"""Options and inputs checked before any training runs (exit 2, one line naming the option), and the
output formats scripts rely on (--json alone on stdout, generate's samples, word-level prompts)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

import rnnkit

from test_cli_errors import LM, fails

TINY = ("--hidden_size", "8", "--embed_size", "8", "--batch_size", "4", "--bptt", "8", "--no-progress")


@pytest.mark.parametrize("device", ["foo", "gpu", "cuda:x", "cpu0"])
def test_train_refuses_an_unknown_device(cli, files, tmp_path, device):
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--device", device, "--out", tmp_path / "o", *LM,
          match=f"--device must be auto, cpu, cuda or cuda:N, got '{device}'")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error(cli, files, tmp_path):
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--device", "cuda", "--out", tmp_path / "o", *LM,
          match="--device cuda: this torch build has no usable CUDA device")


@pytest.fixture
def lm_checkpoint(cli, files, tmp_path):
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", tmp_path / "lm", *LM)
    assert code == 0, err
    return tmp_path / "lm" / "checkpoint"


def test_generate_and_predict_check_device_and_files(cli, lm_checkpoint, tmp_path):
    fails(cli, 2, "generate", lm_checkpoint, "--device", "gpu", match="--device must be cpu, cuda or cuda:N")
    fails(cli, 2, "predict", lm_checkpoint, "--device", "auto", match="--device must be cpu, cuda or cuda:N")
    fails(cli, 2, "predict", lm_checkpoint, "--output", tmp_path / "no" / "such" / "out.txt",
          match="--output")
    fails(cli, 2, "predict", lm_checkpoint, "--output", tmp_path, match="is a directory")


@pytest.mark.parametrize("args, message", [
    (("--temperature", "nan"), "--temperature must be a finite number >= 0, got nan"),
    (("--num", "0"), "--num must be > 0, got 0"),
    (("--num", "-2"), "--num must be > 0, got -2"),
    (("--prompt", ""), "--prompt is empty"),
    (("--top-p", "nan"), "--top-p must be in (0, 1]"),
])
def test_generate_refuses_bad_sampling_options(cli, lm_checkpoint, args, message):
    fails(cli, 2, "generate", lm_checkpoint, *args, match=message)


def test_generate_separates_samples(cli, lm_checkpoint):
    code, out, _ = cli("generate", lm_checkpoint, "--num", "3", "--length", "20", "--seed", "1")
    assert code == 0
    samples = out.split("\n-----\n")
    assert len(samples) == 3 and all(s.strip() for s in samples)


def test_word_language_model_generates_without_and_with_a_prompt(cli, files, tmp_path):
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--tokenizer", "word", "--out", tmp_path / "w",
                       "--max-steps", "3", *TINY)
    assert code == 0, err
    ckpt = tmp_path / "w" / "checkpoint"
    code, out, err = cli("generate", ckpt, "--length", "5", "--temperature", "0")
    assert code == 0, err
    assert len(out.split()) == 6  # the most frequent word, then five more
    code, out, err = cli("generate", ckpt, "--length", "5", "--temperature", "0", "--prompt", "the cat")
    assert code == 0, err
    assert out.startswith("the cat ") and len(out.split()) == 7  # the prompt's words stay apart from the rest
    fails(cli, 2, "generate", ckpt, "--prompt", "   ", match="--prompt '   ' is empty after tokenisation")
    # a vocabulary of no words (every word under --min_freq) is refused before training
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--tokenizer", "word", "--min_freq", "100000",
          "--out", tmp_path / "none", "--max-steps", "1", *TINY,
          match="no token of the training text occurs --min_freq 100000 times: the model would read <unk> alone")
    (tmp_path / "p.tsv").write_text("".join(f"ein {w}\ta {w}\n" for w in ("Haus", "Hund", "Baum", "Tisch")))
    for task, data, what in (("classify", files / "train.csv", "texts"), ("tag", files / "train.conll", "sentences"),
                             ("translate", tmp_path / "p.tsv", "sources")):
        fails(cli, 2, "train", task, "--data", data, "--min_freq", "100000", "--out", tmp_path / task,
              "--max-steps", "1", "--no-progress", match=f"no token of the training {what} occurs --min_freq 100000")
    # with --chars a tagger reads every word's spelling: words all <unk> are a legitimate set-up
    code, _, err = cli("train", "tag", "--data", files / "train.conll", "--min_freq", "100000", "--chars", "true",
                       "--out", tmp_path / "chars", "--max-steps", "1", "--no-progress", "--hidden_size", "8")
    assert code == 0, err
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--config", tmp_path, "--out", tmp_path / "c", *TINY,
          match="is a folder; --config takes a TOML file")


def test_data_given_twice_is_two_files_not_the_last_one(cli, files, tmp_path):
    """``--data a --data b`` is ``--data a b`` (the last one silently won): one file too many for classify."""
    fails(cli, 2, "train", "classify", "--data", files / "train.csv", "--data", files / "train.csv",
          "--out", tmp_path / "o", "--hidden_size", "8", match="--data takes one file for 'classify', got 2")


def test_a_builtin_dataset_without_a_train_task_says_where_it_is_used(cli, tmp_path):
    fails(cli, 2, "train", "lm", "--data", "builtin:adding", "--out", tmp_path / "o", *TINY,
          match="built-in dataset 'adding' is for the Python API (rnnkit.data.load_builtin) and 'rnnkit experiment adding'")


def test_a_too_short_validation_file_stops_before_training(cli, files, tmp_path):
    (tmp_path / "one.txt").write_text("a")
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--valid", tmp_path / "one.txt",
          "--out", tmp_path / "o", *LM, match=f"{tmp_path / 'one.txt'}: the validation text has 1 char(s)")
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_forecast_horizon_longer_than_the_window_stops_before_training(cli, tmp_path):
    fails(cli, 2, "train", "forecast", "--data", "builtin:sine", "--horizon", "5", "--window", "3",
          "--max-steps", "2", "--hidden_size", "8", "--no-progress", "--out", tmp_path / "o",
          match="--horizon 5 needs --window >= 5")


def test_forecast_columns_apply_to_builtin_data(cli, tmp_path):
    fails(cli, 2, "train", "forecast", "--data", "builtin:co2", "--columns", "nope", "--max-steps", "2",
          "--hidden_size", "8", "--no-progress", "--out", tmp_path / "o", match="--columns: no column 'nope'")


@pytest.mark.parametrize("args, message", [
    (("--lr", "nan"), "lr must be a number, got nan"),
    (("--min_lr_ratio", "5"), "min_lr_ratio must be in [0, 1]"),
])
def test_training_options_out_of_range(cli, files, tmp_path, args, message):
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", tmp_path / "o", *LM, *args, match=message)


def test_out_must_be_a_folder_that_can_be_made(cli, files, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", f, *LM, match="is a file; give a folder")
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", f / "sub", *LM,
          match="is a file, so no folder can be made under it")
    if Path("/proc/self").is_dir():  # a file system that refuses folders even to root: named, exit 2 (it was 1)
        fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", "/proc/rnnkit-out", *LM,
              match="--out /proc/rnnkit-out")


def test_json_output_is_json_alone(cli, files, tmp_path):
    code, out, err = cli("train", "lm", "--data", files / "train.txt", "--out", tmp_path / "o", "--json", *LM)
    assert code == 0, err
    record = json.loads(out)
    assert record["step"] == 3 and "training /" in err


def test_forecast_header_option_and_the_banner_when_columns_are_numbered(cli, tmp_path):
    (tmp_path / "y.csv").write_text("date,2019,2020\n" + "".join(f"d{k},{k % 7},{k % 5}\n" for k in range(60)))
    run = ("train", "forecast", "--data", tmp_path / "y.csv", "--window", "10", "--hidden_size", "8",
           "--max-steps", "1", "--no-progress", "--json")
    code, _, err = cli(*run, "--out", tmp_path / "auto")
    assert code == 0 and "2 series: 2, 3 (no header row: its cells are numbers; --header yes" in err
    code, _, err = cli(*run, "--out", tmp_path / "yes", "--header", "yes")
    assert code == 0 and re.search(r"2 series: 2019, 2020\b(?! \(no header)", err), err
    info = json.loads(cli("info", tmp_path / "yes" / "checkpoint", "--json")[1])
    assert info["task"]["data"]["header"] == "yes"
    info = json.loads(cli("info", tmp_path / "auto" / "checkpoint", "--json")[1])
    assert "header" not in info["task"]["data"]  # auto is saved as before the option existed (old runs resume)


def test_the_summary_names_what_the_rate_counts(cli, tmp_path):
    code, out, err = cli("train", "classify", "--data", "builtin:sentiment", "--max-steps", "2", "--hidden_size", "8",
                         "--no-progress", "--out", tmp_path / "o")
    assert code == 0, err
    assert re.search(r"stopped after 2 steps \(0\.0\d+ epochs, [\d.]+ s of training, [\d,]+ examples/s\)", out), out
    code, _, err = cli("train", "classify", "--data", "builtin:sentiment", "--max-steps", "10", "--hidden_size", "8",
                       "--out", tmp_path / "p")  # with the progress bar: its rate in the same unit
    assert code == 0, err
    assert re.search(r"[\d,]+ examples/s", err) and "tok/s" not in err, err


def test_json_output_is_strict_json_when_a_metric_is_infinite(cli, tmp_path):
    """A constant series: the naive forecast is exact, so the ratio to it is infinite — null in --json (as
    in metrics.jsonl), not ``Infinity``, which strict JSON parsers refuse."""
    (tmp_path / "s.csv").write_text("a\n" + "5\n" * 60)
    code, out, err = cli("train", "forecast", "--data", tmp_path / "s.csv", "--window", "10", "--hidden_size", "8",
                         "--max-steps", "2", "--no-progress", "--out", tmp_path / "o", "--json")
    assert code == 0, err

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    record = json.loads(out, parse_constant=refuse)
    assert record["naive_mae"] == 0.0 and record["mae_ratio"] is None
    code, out, err = cli("evaluate", tmp_path / "o" / "checkpoint", "--data", tmp_path / "s.csv", "--json")
    assert code == 0, err
    assert json.loads(out, parse_constant=refuse)["mae_ratio"] is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fcntl locks: POSIX")
def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(cli, files, tmp_path):
    """Two runs writing one --out interleaved their metrics and overwrote each other's checkpoints; the run in
    progress holds a lock on out/.rnnkit-train.lock (here: taken by hand, as that run's process holds it), so
    the second is refused at once, before it reads its data. The file stays (removing it would let a run that
    had opened it lock a file no other run sees), but folders made for a run that writes nothing go."""
    import fcntl

    from rnnkit.cli import LOCK_NAME

    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with open(out / LOCK_NAME, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", out, "--max-steps", "1", *TINY,
              match=f"{out} is in use by another rnnkit run")
        fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", out, "--resume", *TINY,
              match="is in use by another rnnkit run")
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", out, "--max-steps", "1", *TINY)
    assert code == 0, err
    assert (out / "checkpoint").is_dir() and (out / LOCK_NAME).exists() and (out / "notes.txt").read_text() == "mine"
    fails(cli, 2, "train", "lm", "--data", tmp_path / "missing.txt", "--out", tmp_path / "new" / "a" / "b", *TINY,
          match="missing.txt")
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", tmp_path / "new" / "c", "--resume", *TINY,
          match="checkpoint not found")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fcntl locks: POSIX")
def test_a_refused_run_leaves_the_running_one_its_folder_and_lock(tmp_path, monkeypatch):
    """Run B finds --out missing, but run A makes and locks it before B opens the lock file: B is refused and
    must not remove A's lock file or folder (only a run that held the lock cleans up)."""
    import fcntl

    from rnnkit import cli

    out, real_open, other = tmp_path / "x", os.open, []

    def another_run_locks_first(path, flags, mode=0o777):
        if not other:
            other.append(real_open(path, os.O_RDONLY | os.O_CREAT, 0o666))
            fcntl.flock(other[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", another_run_locks_first)
    with pytest.raises(cli.UsageError, match="is in use by another rnnkit run"):
        with cli._out_locked(out):
            pass
    assert (out / cli.LOCK_NAME).exists()
    os.close(other[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fcntl locks: POSIX")
def test_a_lock_file_that_cannot_be_opened_runs_unguarded(cli, files, tmp_path, monkeypatch):
    """(Another user's lock file, say): a warning, and the run goes on."""
    from rnnkit.cli import LOCK_NAME

    real_open = os.open

    def refused(path, flags, mode=0o777):
        if str(path).endswith(LOCK_NAME):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refused)
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", tmp_path / "o", "--max-steps", "1", *TINY)
    assert code == 0, err
    assert "cannot open" in err and "Permission denied" in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fcntl locks: POSIX")
def test_a_file_system_without_locks_runs_unguarded(cli, files, tmp_path, monkeypatch):
    """flock failing for another reason than a lock held (ENOLCK on some network mounts) is not 'in use'."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", tmp_path / "o", "--max-steps", "1", *TINY)
    assert code == 0, err
    assert "cannot lock" in err and "No locks available" in err


def test_forecast_evaluate_says_which_history_it_scores_from(cli, tmp_path):
    """By default evaluate scores a file as the continuation of the end of the training split the checkpoint
    keeps, and says so; --context none scores it on its own history (its first step has no forecast), as
    the Python API does for that series alone; --context is refused for other tasks."""
    import math

    values = [20 + 5 * math.sin(i / 5) for i in range(160)]
    (tmp_path / "train.csv").write_text("v\n" + "".join(f"{v:.4f}\n" for v in values[:120]))
    (tmp_path / "later.csv").write_text("v\n" + "".join(f"{v:.4f}\n" for v in values[140:]))
    code, _, err = cli("train", "forecast", "--data", tmp_path / "train.csv", "--window", "10", "--hidden_size", "8",
                       "--max-steps", "3", "--no-progress", "--out", tmp_path / "o")
    assert code == 0, err
    code, out, err = cli("evaluate", tmp_path / "o" / "checkpoint", "--data", tmp_path / "later.csv")
    assert code == 0, err
    assert "continuation of the last 10 steps of the training split" in out and "--context none" in out
    code, out, err = cli("evaluate", tmp_path / "o" / "checkpoint", "--data", tmp_path / "later.csv", "--json",
                         "--context", "none")
    assert code == 0, err
    assert "scored on the file's own history" in err
    alone = json.loads(out)

    from rnnkit.train.tasks import load_trained

    task, model, _ = load_trained(tmp_path / "o" / "checkpoint")
    series = torch.tensor(values[140:], dtype=torch.float32).view(1, -1, 1)
    with torch.no_grad():
        pred = model(series)[0]  # (T - 1, 1): the forecasts of steps 2.. from the file's own history
    mae = (pred - series[0, 1:]).abs().mean().item()
    assert alone["mae"] == pytest.approx(mae, rel=1e-5)
    code, _, err = cli("train", "classify", "--data", "builtin:sentiment", "--max-steps", "1", "--hidden_size", "8",
                       "--no-progress", "--out", tmp_path / "c")
    assert code == 0, err
    code, _, err = cli("evaluate", tmp_path / "c" / "checkpoint", "--data", "builtin:sentiment", "--context", "none")
    assert code == 2 and "--context is a forecast option" in err


def test_task_help_is_plain_text_with_the_whole_usage(cli):
    code, out, _ = cli("train", "translate", "--help")
    assert code == 0
    assert "``" not in out
    assert "--overwrite" in out and "--device" in out and "--json" in out
    assert "constant|linear|exponential|inverse_sigmoid" in out  # choices are not cut short
    # a default decided when the config is built is said in words, not shown as its placeholder None
    assert re.search(r"--clip_norm +float \| None +1\.0, or 0 with clip_value\n", out)
    lm_help = cli("train", "lm", "--help")[1]
    assert re.search(r"--epochs +int +0 \(one epoch if max_steps and time_budget are 0 too\)\n", lm_help)
    assert re.search(r"--epochs +int +10\n", out)  # a task's own default
    assert re.search(r"--cell +lstm\|gru\|rnn_tanh\|rnn_relu +'lstm'\n", out)


def test_diagnose_and_experiment_check_out_before_the_work(cli, lm_checkpoint, tmp_path, monkeypatch):
    """An --out that cannot be written is named before any run starts (it was found after a sweep of several
    minutes, as a FileExistsError), as train's is."""
    from rnnkit.diagnostics import experiments

    monkeypatch.setattr(experiments, "sweep", lambda *a, **k: pytest.fail("the sweep ran"))
    (tmp_path / "c.csv").write_text("x")
    fails(cli, 2, "experiment", "copy", "--cell", "lstm", "--length", "3", "--steps", "5", "--out", tmp_path / "c.csv",
          match="c.csv is a file; give a folder")
    fails(cli, 2, "diagnose", "gradients", "--cell", "rnn", "--length", "5", "--out", tmp_path / "c.csv" / "sub",
          match="is a file, so no folder can be made under it")
    (tmp_path / "t.txt").write_text("some text")
    fails(cli, 2, "diagnose", "activations", lm_checkpoint, "--text-file", tmp_path / "t.txt", "--out", tmp_path,
          match="is a folder; give a file name")


def test_diagnose_takes_underscored_options_and_checks_its_inputs(cli, lm_checkpoint, tmp_path):
    code, out, err = cli("diagnose", "saturation", "--cell", "gru", "--length", "5", "--hidden_size", "4", "--json")
    assert code == 0, err
    assert json.loads(out)
    fails(cli, 2, "diagnose", "gradients", "--length", "1", match="needs length >= 2")
    page = tmp_path / "a.html"
    fails(cli, 2, "diagnose", "activations", lm_checkpoint, "--text-file", tmp_path / "missing.txt", "--out", page,
          match="missing.txt")
    fails(cli, 2, "diagnose", "activations", lm_checkpoint, "--text", "the cat", "--unit", "999", "--out", page,
          match="--unit 999: the model has hidden units 0 to 7")
    fails(cli, 2, "diagnose", "activations", lm_checkpoint, "--text", "x", "--text-file", tmp_path / "t.txt",
          "--out", page, match="not both")
    code, _, err = cli("diagnose", "activations", lm_checkpoint, "--text", "a", "--out", page)
    assert code == 0 and "Warning" not in err


def test_diagnose_refuses_a_word_model_where_it_reads_characters(cli, files, tmp_path):
    """The activation page steps through characters: a word model's page was all <unk> and still written;
    saturation on a text with no word crashed inside torch."""
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--tokenizer", "word", "--out", tmp_path / "w",
                       "--max-steps", "2", *TINY)
    assert code == 0, err
    ckpt = tmp_path / "w" / "checkpoint"
    fails(cli, 2, "diagnose", "activations", ckpt, "--text", "the cat", "--out", tmp_path / "a.html",
          match="is a word-level language model; the activation page reads the text one character at a time")
    assert not (tmp_path / "a.html").exists()
    fails(cli, 2, "diagnose", "saturation", "--checkpoint", ckpt, "--text", "   ", match="the text has no tokens")
    fails(cli, 2, "diagnose", "saturation", "--cell", "lstm", "--text", "hello",  # (it was left unread)
          match="--text and --text-file are read by a language model: give its --checkpoint too")
    fails(cli, 2, "diagnose", "saturation", "--checkpoint", ckpt, "--text", "the cat", "--train-steps", "100",
          "--length", "7", match="--length, --train-steps describe the adding-task models; with --checkpoint")
    fails(cli, 2, "train", "classify", "--data", "builtin:sentiment", "--valid", "builtin:sentiment", "--out",
          tmp_path / "v", match="--valid takes files; a built-in dataset brings its own validation split")


def test_value_clipping_alone_turns_the_default_norm_clipping_off(cli, files, tmp_path):
    """clip_norm defaulted to 1.0, so --clip_value alone was refused as 'not both'; both given still are."""
    from rnnkit.train import TrainConfig

    assert TrainConfig().clip_norm == 1.0 and TrainConfig(clip_value=0.5).clip_norm == 0.0
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", tmp_path / "o", "--clip_value", "0.5", *LM)
    assert code == 0, err
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--out", tmp_path / "p", "--clip_value", "0.5",
          "--clip_norm", "1", *LM, match="clip_norm 1.0 and clip_value 0.5 are both set")


def test_config_file_errors_name_the_file(cli, files, tmp_path):
    twice = tmp_path / "twice.toml"
    twice.write_text("hidden_size = 16\n[model]\nhidden_size = 32\n")
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--config", twice, "--out", tmp_path / "o", *LM,
          match=f"{twice}: hidden_size is set twice, at the top level and in [model]; keep one")
    typo = tmp_path / "typo.toml"
    typo.write_text("hiddn_size = 16\n")
    fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--config", typo, "--out", tmp_path / "o", *LM,
          match=f"{typo}: unknown option --hiddn_size")
    wrong = tmp_path / "wrong.toml"  # a value of the wrong type was refused later, by the model, without the file
    for text, message in (("hidden_size = 8.0\n", "hidden_size must be an integer; got 8.0"),
                          ("[train]\nlr = true\n", "lr must be a number; got True"),
                          ("[data]\ntokenizer = 3\n", "tokenizer must be")):
        wrong.write_text(text)
        fails(cli, 2, "train", "lm", "--data", files / "train.txt", "--config", wrong, "--out", tmp_path / "o", *LM,
              match=f"{wrong}: {message}")


def test_info_marks_a_missing_file(cli, lm_checkpoint):
    from rnnkit.train.checkpoint import resolve

    snap = resolve(lm_checkpoint)
    (snap / "vocab.json").unlink()
    code, out, err = cli("info", lm_checkpoint, "--json")
    assert code == 0, err
    assert json.loads(out)["files"]["vocab.json"] == "missing"
    fails(cli, 2, "generate", lm_checkpoint, match="vocab.json is missing")


def test_small_things_a_user_notices(cli, files, tmp_path):
    fails(cli, 2, "train", "translate", "--data", "builtin:reverse", "--max_length", "-1", "--out", tmp_path / "t",
          "--max-steps", "1", "--no-progress", match="max_length must be >= 0")
    code, out, err = cli("train", "lm", "--data", files / "train.txt", "--tokenizer", "word", "--out", tmp_path / "w",
                         "--max-steps", "2", *TINY)
    assert code == 0, err
    import re

    train, valid = (int(n.replace(",", "")) for n in re.search(r"([\d,]+) training / ([\d,]+) validation", out).groups())
    words = len((files / "train.txt").read_text().split())
    assert abs(train + valid - words) <= 1  # the banner counts words (tokens), not characters
    fails(cli, 2, "info", tmp_path / "w", match=f"its checkpoints are {tmp_path / 'w' / 'checkpoint'}")
    snap = next((tmp_path / "w" / "checkpoint").glob("step-*"))
    assert snap.stat().st_mode & 0o055 == 0o055 & ~_umask()  # group/other may read as the umask allows


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_validation_label_unseen_in_training_is_named(cli, files, tmp_path):
    (tmp_path / "valid.csv").write_text("text,label\ngood film,pos\nso so,neutral\n")
    fails(cli, 2, "train", "classify", "--data", files / "train.csv", "--valid", tmp_path / "valid.csv",
          "--out", tmp_path / "o", "--max-steps", "1", "--hidden_size", "8", "--embed_size", "8", "--no-progress",
          match="valid.csv: the validation data has labels not seen in training: ['neutral']")


def test_a_validation_series_of_other_columns_is_named_by_its_file(cli, tmp_path):
    """The task's checks of a --valid file as a whole name it, as the readers name a file and line (the
    forecast, LM and caption messages went out without one)."""
    (tmp_path / "t.csv").write_text("v\n" + "".join(f"{i % 7}\n" for i in range(40)))
    (tmp_path / "w.csv").write_text("w\n" + "".join(f"{i % 5}\n" for i in range(20)))
    fails(cli, 2, "train", "forecast", "--data", tmp_path / "t.csv", "--valid", tmp_path / "w.csv", "--window", "5",
          "--out", tmp_path / "o", "--max-steps", "1", "--no-progress",
          match=f"{tmp_path / 'w.csv'}: the validation series has columns ['w'], the model forecasts ['v']")


def test_evaluate_names_the_file_whose_labels_training_never_saw(cli, files, tmp_path):
    code, _, err = cli("train", "classify", "--data", files / "train.csv", "--out", tmp_path / "o", "--max-steps", "1",
                       "--hidden_size", "8", "--embed_size", "8", "--no-progress")
    assert code == 0, err
    (tmp_path / "new.csv").write_text("text,label\ngood film,pos\nso so,neutral\n")
    fails(cli, 2, "evaluate", tmp_path / "o" / "checkpoint", "--data", tmp_path / "new.csv",
          match=f"{tmp_path / 'new.csv'}: the validation data has labels not seen in training: ['neutral']")


def test_a_holdout_that_leaves_no_validation_example_stops_before_training(cli, tmp_path):
    """Every class occurs once: whichever example is held out has a class training lacks and goes back, which
    left an empty validation set — and a crash at the first evaluation, after the training."""
    (tmp_path / "d.csv").write_text("text,label\ngreat,pos\nawful,neg\nso so,neutral\n")
    fails(cli, 2, "train", "classify", "--data", tmp_path / "d.csv", "--out", tmp_path / "o", "--max-steps", "2",
          "--hidden_size", "8", "--embed_size", "8", "--no-progress", match="no validation examples are left")
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_train_flags_take_underscores_too(cli, files, tmp_path):
    code, _, err = cli("train", "lm", "--data", files / "train.txt", "--out", tmp_path / "o", "--max_steps", "2",
                       "--no_progress", "--hidden_size", "8", "--embed_size", "8", "--batch_size", "4", "--bptt", "8")
    assert code == 0, err


def test_version_names_the_package_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"rnnkit {rnnkit.__version__}"
