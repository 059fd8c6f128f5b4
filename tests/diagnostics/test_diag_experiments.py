"""The long-range benchmarks, the plots and the CLI commands, at toy sizes (seconds, not minutes)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from rnnkit.diagnostics import commands
from rnnkit.diagnostics.experiments import (COPY_DELAY, DEFAULT_LR, TrainConfig, markdown_table, run_adding,
                                           run_copy, sweep)
from rnnkit.diagnostics.plots import attention_heatmap, confusion_matrix, plot_confusion_matrix, plot_gradient_flow
from rnnkit.diagnostics.tasks import ADDING_BASELINE_MSE, adding_batch, copy_batch, make_layer

PNG = b"\x89PNG\r\n\x1a\n"
TINY = dict(hidden_size=8, batch_size=8, test_size=16, eval_every=5, threads=None)


def test_tasks_are_what_they_claim():
    x, y = adding_batch(500, 30, seed=1)
    assert x.shape == (500, 30, 2) and (x[..., 1].sum(1) == 2).all()
    torch.testing.assert_close((x[..., 0] * x[..., 1]).sum(1), y)
    assert float(((y - 1) ** 2).mean()) == pytest.approx(ADDING_BASELINE_MSE, abs=0.03)
    ids, target = copy_batch(4, 7, seed=2)
    assert ids.shape == target.shape == (4, 27)
    torch.testing.assert_close(target[:, -10:], ids[:, :10])  # recall the first ten symbols at the end
    assert (ids[:, 16] == 9).all() and (target[:, :-10] == 0).all()


def test_copy_options_memory_alphabet_delay(capsys, tmp_path):
    ids, target = copy_batch(3, 6, seed=1, memory=4, alphabet=3)  # 4 symbols of 1..3, delay 6
    assert ids.shape == target.shape == (3, 4 + 6 + 4)
    assert 1 <= int(ids[:, :4].min()) and int(ids[:, :4].max()) <= 3
    assert (ids[:, 9] == 4).all() and (ids[:, 10:] == 0).all()  # the delimiter (alphabet + 1), then blanks
    torch.testing.assert_close(target[:, -4:], ids[:, :4])
    assert (target[:, :-4] == 0).all()
    # rows are drawn independently: the experiment's test batch of 500 from the 4^3 = 64 sequences of its
    # defaults (distinct draws stopped at 64, all of them training sequences too)
    ids, _ = copy_batch(500, 5, seed=3, memory=3, alphabet=4)
    assert ids.shape[0] == 500 and len({tuple(r.tolist()) for r in ids}) == 64

    cfg = TrainConfig(**TINY, copy_memory=4, copy_alphabet=3)
    r = run_copy("gru", 6, 5, cfg)
    assert (r.model.n_in, r.model.head.out_features, r.T) == (5, 4, 6)
    # lr None is the task's default, 1e-2 for copy
    assert TrainConfig().lr is None and DEFAULT_LR == {"adding": 1e-3, "copy": 1e-2}
    assert run_copy("gru", 6, 5, cfg, lr=1e-2).history == r.history != run_copy("gru", 6, 5, cfg, lr=1e-3).history
    with pytest.raises(ValueError, match="copy_alphabet must be in 2..9"):
        TrainConfig(copy_alphabet=10)
    with pytest.raises(ValueError, match="copy_memory must be >= 1"):
        TrainConfig(copy_memory=0)

    tiny = ["--hidden-size", "4", "--batch-size", "4", "--eval-every", "5", "--steps", "5", "--json",
            "--out", str(tmp_path)]  # (never the repository's runs/)
    assert commands.main(["experiment", "copy", "--cell", "lstm", "--delay", "3,5", "--memory", "2",
                          "--alphabet", "5", *tiny]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["T"] for r in rows] == [3, 5]
    assert commands.main(["experiment", "copy", "--cell", "lstm", *tiny]) == 0  # the default delay
    assert [json.loads(line)["T"] for line in capsys.readouterr().out.splitlines()] == [COPY_DELAY]
    with pytest.raises(SystemExit):
        commands.main(["experiment", "copy", "--alphabet", "12"])
    assert "the alphabet has 2 to 9 symbols" in capsys.readouterr().err


def test_cells_and_their_initialisation():
    irnn = make_layer("irnn", 2, 6)
    torch.testing.assert_close(irnn.weight_hh_l0.detach(), torch.eye(6))
    assert irnn.nonlinearity == "relu" and float(irnn.bias_hh_l0.detach().abs().sum()) == 0
    lstm = make_layer("lstm", 2, 6)
    torch.testing.assert_close((lstm.bias_ih_l0 + lstm.bias_hh_l0)[6:12].detach(), torch.ones(6))
    with pytest.raises(ValueError, match="unknown cell 'elman'"):
        make_layer("elman", 2, 6)


def test_run_adding_and_copy_report_consistently():
    r = run_adding("gru", 12, 10, TrainConfig(**TINY), with_flow=True)
    assert r.steps_run == 10 and r.history[-1][0] == 10 and r.metric == r.history[-1][1]
    assert r.flow is not None and r.flow.h.shape == (1, 12)
    assert r.solved == (r.steps_to_solve is not None)
    c = run_copy("lstm", 5, 10, TrainConfig(**TINY))
    assert 0.0 <= c.metric <= 1.0 and c.task == "copy" and c.T == 5
    # the same seed gives the same run
    assert run_copy("lstm", 5, 10, TrainConfig(**TINY)).history == c.history


def test_a_run_with_threads_leaves_the_callers_thread_count(monkeypatch):
    from rnnkit.diagnostics.tasks import AddingModel

    seen, before, forward = [], torch.get_num_threads(), AddingModel.forward
    def counted(self, x):
        seen.append(torch.get_num_threads())
        return forward(self, x)

    monkeypatch.setattr(AddingModel, "forward", counted)
    asked = 1 if before > 1 else 2
    run_adding("gru", 6, 2, TrainConfig(**{**TINY, "threads": asked}))
    assert seen and set(seen) == {asked}  # the run itself used the count asked for
    assert torch.get_num_threads() == before  # and gave the caller's back (it kept the run's)


def test_solved_stops_early_and_counts_steps(monkeypatch):
    import rnnkit.diagnostics.experiments as E

    monkeypatch.setattr(E, "SOLVED_ADDING_MSE", 10.0)  # any model "solves" it at the first evaluation
    r = run_adding("rnn", 6, 100, TrainConfig(**TINY))
    assert r.steps_to_solve == 5 and r.steps_run == 5


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="unknown training option 'hiden_size'"):
        run_adding("rnn", 6, 5, hiden_size=3)


def test_sweep_writes_table_csv_and_plot(tmp_path):
    results = sweep("adding", ["rnn", "irnn"], [6, 9], 5, TrainConfig(**TINY), tmp_path, progress=None)
    assert len(results) == 4
    rows = list(csv.DictReader(open(tmp_path / "adding_results.csv")))
    assert [(r["cell"], r["T"]) for r in rows] == [("rnn", "6"), ("irnn", "6"), ("rnn", "9"), ("irnn", "9")]
    md = (tmp_path / "adding_results.md").read_text()
    assert md == markdown_table(results) and "| tanh RNN |" in md and "T=9" in md
    assert (tmp_path / "adding_steps.png").read_bytes()[:8] == PNG


def test_plots(tmp_path):
    r = run_adding("lstm", 8, 5, TrainConfig(**TINY), with_flow=True)
    p = plot_gradient_flow([{"lstm": r.flow}, {"lstm": r.flow}], tmp_path / "g.png", panel_titles=["a", "b"])
    assert p.read_bytes()[:8] == PNG
    w = torch.softmax(torch.randn(4, 6), dim=1)
    assert attention_heatmap(w, tmp_path / "att.png", list("abcdef"), list("wxyz")).read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="source_tokens has 2 labels, expected 6"):
        attention_heatmap(w, tmp_path / "bad.png", ["a", "b"])
    m = confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 2, 1])
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 1], [0, 0, 2]])
    out = plot_confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 2, 1], tmp_path / "cm.png", ["x", "y", "z"], normalize=True)
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="labels must be in"):
        confusion_matrix([0, 3], [0, 1], num_classes=2)


def test_commands(tmp_path, capsys):
    out = tmp_path / "g"
    assert commands.main(["diagnose", "gradients", "--cell", "rnn,lstm", "--length", "20", "--hidden-size", "8",
                          "--batch-size", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tanh RNN" in text and "LSTM" in text and (out / "gradient_flow.png").read_bytes()[:8] == PNG
    saved = json.loads((out / "gradient_flow.json").read_text())
    assert len(saved["at_init"]["rnn"]["grad_h"]) == 20

    assert commands.main(["diagnose", "saturation", "--cell", "gru", "--length", "10", "--hidden-size", "8",
                          "--json"]) == 0
    sat = json.loads(capsys.readouterr().out)
    assert set(sat["GRU"]["l0"]) == {"r", "z", "n"}

    assert commands.main(["experiment", "copy", "--cell", "gru", "--length", "4", "--steps", "5",
                          "--hidden-size", "8", "--batch-size", "4", "--eval-every", "5", "--out", str(tmp_path / "e"),
                          "--gradients"]) == 0
    text = capsys.readouterr().out
    assert "| GRU |" in text and (tmp_path / "e" / "copy_gradients_T4.png").exists()
    with pytest.raises(SystemExit):
        commands.main(["experiment", "adding", "--cell", "elman"])


def test_through_the_rnnkit_command(tmp_path, capsys):
    from rnnkit.cli import main

    assert main(["diagnose", "gradients", "--cell", "rnn,irnn", "--length", "12", "--hidden-size", "4",
                 "--batch-size", "2", "--out", str(tmp_path)]) == 0
    assert "IRNN" in capsys.readouterr().out and (tmp_path / "gradient_flow.png").exists()
    assert main(["experiment", "adding", "--cell", "elman"]) == 2  # usage error: one line, exit code 2
    assert "unknown cell" in capsys.readouterr().err


def test_json_outputs_stay_json_when_a_run_diverges_or_a_gradient_vanishes(tmp_path, capsys):
    """A diverged run's NaN metric, and an infinite decay rate where the gradient is exactly 0, were written
    as NaN/Infinity, which strict JSON parsers refuse; they are null, as in metrics.jsonl."""
    from rnnkit.cli import main

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))

    assert main(["experiment", "adding", "--cell", "irnn", "--length", "20", "--steps", "5", "--lr", "1e30",
                 "--hidden-size", "4", "--batch-size", "4", "--json", "--out", str(tmp_path / "e")]) == 0
    row = strict(capsys.readouterr().out.strip())
    assert row["diverged"] and row["metric"] is None
    assert main(["diagnose", "gradients", "--cell", "irnn", "--length", "3", "--hidden-size", "1", "--batch-size",
                 "1", "--seed", "4", "--json", "--out", str(tmp_path / "g")]) == 0
    summary = strict(capsys.readouterr().out.strip())
    assert summary["at_init"]["irnn"]["grad_h_first"] == 0.0  # (so the decay per step is infinite: null)
    assert summary["at_init"]["irnn"]["decay_log10_per_step"] is None
    strict((tmp_path / "g" / "gradient_flow.json").read_text())
    # with --train-steps too: the line saying how training went goes to stderr, stdout holds the JSON alone
    assert main(["diagnose", "gradients", "--cell", "gru", "--length", "3", "--hidden-size", "2", "--batch-size",
                 "2", "--train-steps", "2", "--json", "--out", str(tmp_path / "t")]) == 0
    captured = capsys.readouterr()
    assert set(strict(captured.out)) == {"at_init", "trained"} and "trained GRU 2 steps" in captured.err


def test_a_sweep_of_no_runs_is_named():
    from rnnkit.diagnostics.experiments import sweep

    with pytest.raises(ValueError, match="no runs: give at least one cell and one length"):
        sweep("adding", [], [10], 5)


def test_csv_takes_every_row_s_columns(tmp_path):
    """A diverged run has no gradient-flow column; the runs after it do."""
    from rnnkit.diagnostics.experiments import write_csv

    class Row:
        def __init__(self, **kw):
            self.kw = kw

        def row(self):
            return self.kw

    write_csv([Row(cell="irnn", steps=5), Row(cell="lstm", steps=5, grad_decay_log10_per_step=0.1)], tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert rows[0]["grad_decay_log10_per_step"] == "" and rows[1]["grad_decay_log10_per_step"] == "0.1"


def test_copy_takes_a_delay_of_one_and_adding_needs_two(tmp_path, capsys):
    from rnnkit.cli import main

    code = main(["experiment", "copy", "--cell", "gru", "--delay", "1", "--steps", "2", "--eval-every", "1",
                 "--hidden-size", "4", "--out", str(tmp_path / "c"), "--json"])
    assert code == 0, capsys.readouterr().err
    code = main(["experiment", "adding", "--cell", "gru", "--length", "1", "--steps", "2", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and "--length must be >= 2 (it marks two numbers), got 1" in err


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
    (["--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
    (["--max-norm", "nan"], "argument --max-norm: expected a finite number > 0"),
    (["--seed", "100000000000000"], "argument --seed: expected an int from 0 to 8,796,093,022,208"),
    (["--seed", "-1"], "argument --seed: expected an int from 0"),
])
def test_values_argparse_would_pass_are_refused_by_name(tmp_path, capsys, args, message):
    """nan passed a test of v <= 0 and failed in the optimiser; inf trained to a NaN loss; a seed past 2**43
    overflowed the experiments' batch seeds inside torch."""
    from rnnkit.cli import main

    code = main(["experiment", "adding", "--cell", "rnn", "--length", "3", "--steps", "2", "--out", str(tmp_path),
                 *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


@pytest.mark.parametrize("args, message", [
    (["adding", "--memory", "5"], "--memory: an option of the copy task, not of adding"),
    (["adding", "--alphabet", "4", "--memory", "5"], "--memory and --alphabet: options of the copy task"),
    (["adding", "--cell", "lstm,gru,lstm"], "'lstm,gru,lstm' names the cell lstm more than once"),
    (["copy", "--length", "4,4"], "'4,4' names the length 4 more than once"),
])
def test_options_that_would_be_ignored_or_repeated_are_refused(tmp_path, capsys, args, message):
    """Copy-only options given to adding were ignored; a repeated cell or length ran again and was tabled once."""
    from rnnkit.cli import main

    code = main(["experiment", *args, "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
