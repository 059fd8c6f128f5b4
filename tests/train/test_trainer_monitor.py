"""The trainer's gradient monitor: exploding gradients and (with the probe on) vanishing ones are
warned about in metrics.jsonl and above the progress bar; a normal run warns about nothing; the
probe leaves training bit-identical; the thresholds are ``--key value`` options."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.diagnostics import GradientWarning
from rnnkit.train import StepContext, TrainConfig, Trainer, TrainTask

from train_toy import StreamTask, TinyLM


class LoudStreamTask(StreamTask):
    """The toy stream with its loss scaled by 1e6: every gradient norm is far above 1e3 (clipping
    keeps the run finite, so it goes on and the warning is all that happens)."""

    def loss(self, model, batch, carry, ctx):
        loss, n, state = super().loss(model, batch, carry, ctx)
        return loss * 1e6, n, state


class LastStepModel(nn.Module):
    """A tanh RNN read at its last step: the textbook case of gradients vanishing over a long sequence."""

    def __init__(self, cell: str = "rnn", hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(4, hidden)
        self.rnn = (rnnkit.RNN(hidden, hidden, batch_first=True) if cell == "rnn" else
                    rnnkit.LSTM(hidden, hidden, batch_first=True))
        self.out = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.out(self.rnn(self.embed(x))[0][:, -1])  # (B, 4)


class FirstTokenTask(TrainTask):
    """Recall the first token of a length-T sequence at its end (B = 4 rows, 3 batches)."""

    def __init__(self, T: int = 100) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 4, (3, 4, T), generator=g)  # (batches, B, T)

    def train_batches(self, epoch):
        return [{"x": x, "y": x[:, 0]} for x in self.x]

    def loss(self, model, batch, carry, ctx: StepContext):
        return nn.functional.cross_entropy(model(batch["x"]), batch["y"], reduction="sum"), len(batch["y"]), None

    def evaluate(self, model):
        return {"loss": 0.0}


def fit(tmp_path, model, task, *, progress=False, **cfg):
    cfg = {"max_steps": 6, "lr": 0.01, "log_every": 2, **cfg}
    trainer = Trainer(model, task, TrainConfig(**cfg), out_dir=tmp_path, progress=progress)
    result = trainer.fit()
    return trainer, result


def warnings_logged(tmp_path):
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["split"] == "warning"]


def test_exploding_gradients_warn_in_the_log_and_as_a_warning(tmp_path):
    torch.manual_seed(0)
    with pytest.warns(GradientWarning, match="gradients exploding"):
        trainer, result = fit(tmp_path, TinyLM(), LoudStreamTask(), explode_patience=3)
    logged = warnings_logged(tmp_path)
    # one warning per streak: the norm stays above 1e3 from step 1, so only step 3 warns
    assert [(r["step"], r["kind"]) for r in logged] == [(3, "exploding")]
    assert logged[0]["value"] > 1e3 and "above 1000 for 3 consecutive steps" in logged[0]["message"]
    assert result.stop_reason == "max_steps"
    train = [r for r in result.log if r["split"] == "train"]
    assert all(r["grad_norm"] > 1e3 and r["grad_norm_max"] >= r["grad_norm"] and r["clip_rate"] == 1.0
               for r in train)


def test_warning_goes_above_the_progress_bar(tmp_path, capsys):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientWarning)  # with a bar, no Python warning as well
        fit(tmp_path, TinyLM(), LoudStreamTask(), progress=True, explode_threshold=10.0, explode_patience=2)
    assert "rnnkit: warning: step 2: gradients exploding — global norm above 10" in capsys.readouterr().err


def test_vanishing_gradients_warn_when_the_probe_is_on(tmp_path):
    torch.manual_seed(0)
    with pytest.warns(GradientWarning, match="gradients vanishing through time"):
        trainer, _ = fit(tmp_path / "on", LastStepModel("rnn"), FirstTokenTask(T=100), probe_every=3)
    logged = warnings_logged(tmp_path / "on")
    assert [(r["step"], r["kind"]) for r in logged] == [(3, "vanishing"), (6, "vanishing")]
    assert all(r["value"] < 1e-6 for r in logged)
    # the probe measured the trained layer on (up to 8 rows of) a real batch, over all T steps
    assert trainer.monitor.last_flow.steps == 100
    # off by default: the same run says nothing
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientWarning)
        fit(tmp_path / "off", LastStepModel("rnn"), FirstTokenTask(T=100))
    assert warnings_logged(tmp_path / "off") == []


def test_a_normal_run_warns_about_nothing(tmp_path):
    # an LSTM over short chunks, probed every step: gradients neither explode nor vanish
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientWarning)
        trainer, result = fit(tmp_path, TinyLM(), StreamTask(), probe_every=1)
    assert warnings_logged(tmp_path) == [] and trainer.monitor.events == []
    assert 1e-6 < trainer.monitor.last_flow.ratio_first_last() and result.stop_reason == "max_steps"


def test_the_probe_leaves_training_bit_identical(tmp_path):
    # no random numbers drawn, no .grad written: a probed run ends with the same weights
    runs = []
    for every in (0, 2):
        torch.manual_seed(0)
        trainer, _ = fit(tmp_path / str(every), TinyLM(), StreamTask(), probe_every=every)
        runs.append(trainer.model.state_dict())
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_a_failing_probe_turns_itself_off_and_training_goes_on(tmp_path, monkeypatch):
    torch.manual_seed(0)
    trainer = Trainer(TinyLM(), StreamTask(), TrainConfig(max_steps=4, probe_every=1), progress=False)
    calls = []

    def broken(*args, **kwargs):
        calls.append(kwargs["step"])
        raise RuntimeError("no such kernel\nsecond line")

    monkeypatch.setattr(trainer.monitor, "probe", broken)
    with pytest.warns(GradientWarning, match=r"probe failed at step 1 \(no such kernel\); it is off"):
        assert trainer.fit().step == 4
    assert calls == [1]


def test_probe_without_a_recurrent_layer_says_so(tmp_path):
    class NoRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)

    with pytest.warns(GradientWarning, match="NoRNN has no recurrent layer at .rnn"):
        Trainer(NoRNN(), StreamTask(), TrainConfig(probe_every=5), progress=False)


def test_thresholds_are_options(tmp_path):
    from rnnkit.train.options import OptionError, Settings, build

    s = Settings({"train": TrainConfig})
    s.parse_pairs(["--explode-threshold", "50", "--explode_patience", "2", "--vanish_ratio", "1e-4",
                   "--probe_every", "100"])
    cfg = build(TrainConfig, s.values["train"])
    assert (cfg.explode_threshold, cfg.explode_patience, cfg.vanish_ratio, cfg.probe_every) == (50.0, 2, 1e-4, 100)
    assert cfg.monitor_config().explode_threshold == 50.0
    with pytest.raises(OptionError, match="--explode_patience must be an integer"):
        s.parse_pairs(["--explode_patience", "2.5"])
    with pytest.raises(OptionError, match="explode_threshold must be > 0"):
        build(TrainConfig, {"explode_threshold": 0.0})
    with pytest.raises(OptionError, match="probe_every must be >= 0"):
        build(TrainConfig, {"probe_every": -1})


def test_the_probe_of_a_padded_batch_reads_its_longest_rows(tmp_path, monkeypatch):
    """The probe kept the padded tensor and dropped its lengths= (the loss at step T read padding); it now
    takes the longest rows, cut to their length, where the last step is real."""
    from rnnkit.train.trainer import _ProbeInput

    torch.manual_seed(0)
    trainer = Trainer(TinyLM(), StreamTask(), TrainConfig(max_steps=1, probe_every=1), progress=False)
    layer = trainer._probe_layer
    shape = (4, 6, layer.input_size) if layer.batch_first else (6, 4, layer.input_size)
    x = torch.randn(shape, device=layer.weight_ih_l0.device)  # (the trainer's device: a GPU where there is one)
    with _ProbeInput(layer) as caught:
        layer(x, lengths=torch.tensor([5, 3, 5, 2]))
    assert caught.lengths.tolist() == [5, 3, 5, 2]
    seen = []
    monkeypatch.setattr(trainer.monitor, "probe", lambda layer, rows, **kw: seen.append(rows))
    trainer._probe(caught.x, caught.lengths)
    rows = seen[0] if not layer.batch_first else seen[0].transpose(0, 1)
    xt = x if not layer.batch_first else x.transpose(0, 1)
    torch.testing.assert_close(rows, xt[:5, [0, 2]].double())
