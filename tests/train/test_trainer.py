"""The training loop: exact resume, Ctrl-C, divergence, refused resume, early stopping, truncated BPTT,
logs and plots — on a toy stream task (tests/train/toy.py) so each test takes well under a second."""
from __future__ import annotations

import collections
import json
import os
import signal

import pytest
import torch

from rnnkit.train import TrainConfig, Trainer, TrainingError, load_checkpoint

from train_toy import StreamTask, TinyLM


def make(tmp_path, name="run", task=None, seed=0, **cfg):
    cfg = {"max_steps": 12, "lr": 0.02, "seed": seed, "log_every": 2, **cfg}
    torch.manual_seed(cfg["seed"])  # the model's initialisation
    model = TinyLM()
    return Trainer(model, task or StreamTask(), TrainConfig(**cfg), out_dir=tmp_path / name,
                   model_type="tiny", model_config={"vocab": 5, "hidden": 8}, vocab={"tokens": list("abcde")},
                   progress=False)


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("optimizer,schedule", [("adamw", "constant"), ("sgd", "linear")])
def test_resume_continues_exactly(tmp_path, optimizer, schedule):
    # N steps in one go == k steps, resume, N - k more (the schedule is over max_steps, so the first
    # leg runs with the same max_steps and is stopped by the time-independent on_step hook instead).
    full = make(tmp_path, "full", optimizer=optimizer, schedule=schedule, epochs=0)
    full.fit()
    stop_at = 7

    def interrupt(tr):
        if tr.step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)  # lands between steps, like a real Ctrl-C

    first = make(tmp_path, "split", optimizer=optimizer, schedule=schedule)
    first.on_step = interrupt
    result = first.fit()
    assert result.stop_reason == "interrupted" and result.step == stop_at + 1
    second = make(tmp_path, "split", optimizer=optimizer, schedule=schedule)
    assert second.fit(resume=tmp_path / "split" / "checkpoint").step == 12
    assert_same(weights(full), weights(second))


def test_resume_across_max_steps_and_epochs(tmp_path):
    # carried state crosses the checkpoint (resume mid-epoch) and the epoch boundary (state reset)
    full = make(tmp_path, "full", max_steps=13)
    full.fit()
    part = make(tmp_path, "part", max_steps=8)
    assert part.fit().stop_reason == "max_steps"
    ck = load_checkpoint(tmp_path / "part" / "checkpoint")
    assert ck.trainer["position"] == 3 and ck.trainer["carry"] is not None
    rest = make(tmp_path, "part", max_steps=13)
    rest.fit(resume=tmp_path / "part" / "checkpoint")
    assert_same(weights(full), weights(rest))


def test_resume_refuses_changed_config(tmp_path):
    make(tmp_path, max_steps=3).fit()
    other = make(tmp_path, max_steps=6, lr=0.03)
    with pytest.raises(TrainingError, match=r"config changed.*lr 0.02 → 0.03"):
        other.fit(resume=tmp_path / "run" / "checkpoint")
    # stopping points may change
    make(tmp_path, max_steps=6, eval_every=2).fit(resume=tmp_path / "run" / "checkpoint")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_resume_refuses_a_new_run_length_under_a_decaying_schedule(tmp_path, schedule):
    """The decay follows the fraction of the run done: 7 of 7 steps then 6 more of 13 would not be the
    13-step run (the lr would jump back up), so the length may change only under a constant lr."""
    make(tmp_path, max_steps=7, schedule=schedule).fit()
    longer = make(tmp_path, max_steps=13, schedule=schedule)
    with pytest.raises(TrainingError, match=rf"max_steps 7 → 13 \(the {schedule} schedule decays"):
        longer.fit(resume=tmp_path / "run" / "checkpoint")


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    tr = make(tmp_path, task=StreamTask(poison_at=6), eval_every=4)
    with pytest.raises(TrainingError, match=r"diverged at step 7.*loss is nan.*last good checkpoint"):
        tr.fit()
    ck = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert ck.step == 4
    assert all(torch.isfinite(v).all() for v in ck.weights.values())


def test_early_stopping_and_best_checkpoint(tmp_path):
    # a huge learning rate with SGD makes validation worse after the first evaluation
    task = StreamTask()
    tr = make(tmp_path, task=task, optimizer="sgd", lr=30.0, clip_norm=0.0, eval_every=1, patience=2, max_steps=50)
    res = tr.fit()
    assert res.stop_reason == "early_stopping" and res.step < 50
    best = load_checkpoint(tmp_path / "run" / "best", expected_type="tiny")
    assert best.meta["step"] == res.best["step"] and not best.trainer


def test_truncated_bptt_detaches_but_carries_state(tmp_path):
    seen = []
    tr = make(tmp_path, max_steps=3)
    tr.on_step = lambda t: seen.append(t.carry)
    tr.fit()
    assert len(seen) == 3  # one carried state per step, so the checks below do run
    for h, c in seen:
        assert h.grad_fn is None and c.grad_fn is None and not h.requires_grad
        assert h.abs().sum() > 0  # the state is real, not reset to zeros


def test_logs_plot_and_clip_rate(tmp_path):
    tr = make(tmp_path, max_steps=8, eval_every=4, clip_norm=1e-3)
    res = tr.fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["split"] == "train"]
    valid = [r for r in lines if r["split"] == "valid"]
    assert [r["step"] for r in train] == [2, 4, 6, 8] and [r["step"] for r in valid] == [4, 8]
    assert all(r["clip_rate"] == 1.0 and r["tokens_per_s"] > 0 for r in train)
    assert res.loss_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.stop_reason == "max_steps" and res.metrics["loss"] == valid[-1]["loss"]


def test_clip_value_bounds_every_gradient_element(tmp_path):
    """Clipping by value through the trainer: with plain SGD each weight moves by at most lr · clip_value in
    one step, and the log counts the step as clipped."""
    tr = make(tmp_path, max_steps=1, optimizer="sgd", lr=1.0, clip_norm=0.0, clip_value=1e-4, log_every=1,
              eval_every=1)
    before = weights(tr)
    tr.fit()
    moved = max(float((after - before[k]).abs().max()) for k, after in weights(tr).items())
    assert 0 < moved <= 1e-4 * (1 + 1e-3)  # float32: the weights round the step by ~1e-8
    train = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["clip_rate"] for r in train if r["split"] == "train"] == [1.0]


def test_time_budget_stops_cleanly(tmp_path):
    tr = make(tmp_path, max_steps=0, time_budget=1e-9)
    res = tr.fit()
    assert res.stop_reason == "time_budget" and res.step == 1 and "loss" in res.metrics
    assert load_checkpoint(tmp_path / "run" / "checkpoint").step == 1


def test_epochs_and_default_one_epoch(tmp_path):
    assert make(tmp_path, max_steps=0, epochs=2).fit().step == 10
    assert make(tmp_path, max_steps=0).fit().step == 5


@pytest.mark.parametrize("stop", [{"epochs": 2}, {}, {"time_budget": 1e-9}])
def test_resuming_a_finished_run_trains_no_further(tmp_path, stop):
    """A run that reached its end, resumed with the same settings, stops at once (by epochs, the default
    one epoch, or a spent time budget it went on by a whole epoch or one step)."""
    first = make(tmp_path, max_steps=0, **stop).fit()
    again = make(tmp_path, max_steps=0, **stop).fit(resume=tmp_path / "run" / "checkpoint")
    assert again.step == first.step and again.stop_reason == first.stop_reason
    assert again.checkpoint == first.checkpoint  # nothing changed, nothing saved again (no step-N.1 copy)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoint").iterdir()) == ["latest", first.checkpoint.name]


def test_log_stays_on_multiples_of_log_every_across_a_resume(tmp_path):
    full = make(tmp_path, "full", max_steps=12, log_every=4)
    full.fit()
    make(tmp_path, "part", max_steps=6, log_every=4).fit()
    make(tmp_path, "part", max_steps=12, log_every=4).fit(resume=tmp_path / "part" / "checkpoint")

    def steps(name):
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r["step"] for r in lines if r["split"] == "train"]

    assert steps("full") == steps("part") == [4, 8, 12]  # the resumed run logged 10 and 14 — or nothing at 12


def test_damaged_training_state_is_named(tmp_path):
    from rnnkit.train.checkpoint import CheckpointError

    make(tmp_path, max_steps=2).fit()
    snap = load_checkpoint(tmp_path / "run" / "checkpoint").path
    header = json.loads((snap / "config.json").read_text())  # no digest: the checks behind it are tested here
    del header["sha256"]["trainer.json"]
    (snap / "config.json").write_text(json.dumps(header))
    state = json.loads((snap / "trainer.json").read_text())
    state["step"] = "2"
    (snap / "trainer.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"training state .* is damaged: 'step' must be an int >= 0, got '2'"):
        make(tmp_path, max_steps=4).fit(resume=tmp_path / "run" / "checkpoint")
    (snap / "trainer.json").write_text("[1]")
    with pytest.raises(CheckpointError, match="expected a JSON object, got list"):
        make(tmp_path, max_steps=4).fit(resume=tmp_path / "run" / "checkpoint")


def test_no_training_batches_is_an_error_with_the_default_stop_too(tmp_path):
    class Empty(StreamTask):
        def train_batches(self, epoch):
            return []

    for stop in ({"max_steps": 0}, {"max_steps": 5}, {"max_steps": 0, "epochs": 2}):
        with pytest.raises(TrainingError, match="the training data gives no batches"):
            make(tmp_path, task=Empty(), **stop).fit()


def test_infinite_settings_are_refused():
    for name in ("time_budget", "clip_norm", "lr"):
        with pytest.raises(ValueError, match=f"{name} must be finite, got inf"):
            TrainConfig(**{name: float("inf")})
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):  # (Python's random takes its absolute value)
        TrainConfig(seed=-1)
    with pytest.raises(ValueError, match="seed must be at most 8,796,093,022,208, got 9000000000000"):
        TrainConfig(seed=9 * 10**12)  # (an epoch's order is seeded by seed · 1,000,003 + epoch: it overflowed)
    from rnnkit.train import seed_everything

    for bad in (-1, 2**70, 1.5, True):
        with pytest.raises(ValueError, match=r"seed_everything: seed must be an int in \[0, 2\*\*63\)"):
            seed_everything(bad)


def test_resume_accepts_a_checkpoint_saved_before_a_vocabulary_key_existed(tmp_path):
    """A key the run's vocabulary state has and an older checkpoint lacks (the LM's unigram counts, the
    forecaster's context) does not count as changed data; a key both have must still match."""
    from rnnkit.train.trainer import ConfigMismatch

    make(tmp_path, max_steps=2).fit()
    newer = make(tmp_path, max_steps=4)
    newer.vocab = {**newer.vocab, "added_later": [1, 2]}
    assert newer.fit(resume=tmp_path / "run" / "checkpoint").step == 4
    changed = make(tmp_path, max_steps=6)
    changed.vocab = {"tokens": list("abcdx")}
    with pytest.raises(ConfigMismatch, match="the vocabulary"):
        changed.fit(resume=tmp_path / "run" / "checkpoint")


def interrupt_after(step):
    def hook(tr):
        if tr.step == step:
            os.kill(os.getpid(), signal.SIGINT)  # answered after step + 1, like a real Ctrl-C

    return hook


def valid_steps(tmp_path, name, split="valid"):
    lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in lines if r["split"] == split]


def test_an_interrupt_on_a_step_due_for_evaluation_evaluates_it_on_resume(tmp_path):
    """Ctrl-C is answered before a due evaluation: the resumed run runs it first (it was skipped for good, so
    the best checkpoint and the patience count differed from the uninterrupted run)."""
    full = make(tmp_path, "full", eval_every=4)
    best = full.fit().best
    first = make(tmp_path, "split", eval_every=4)
    first.on_step = interrupt_after(3)
    assert first.fit().step == 4
    second = make(tmp_path, "split", eval_every=4)
    assert second.fit(resume=tmp_path / "split" / "checkpoint").best == best
    assert valid_steps(tmp_path, "full") == valid_steps(tmp_path, "split") == [4, 8, 12]
    assert_same(weights(full), weights(second))


def test_resuming_an_early_stopped_run_trains_no_further(tmp_path):
    cfg = dict(optimizer="sgd", lr=30.0, clip_norm=0.0, eval_every=1, patience=2, max_steps=50)
    first = make(tmp_path, **cfg).fit()
    assert first.stop_reason == "early_stopping"
    again = make(tmp_path, **cfg).fit(resume=tmp_path / "run" / "checkpoint")  # (it trained on, a step a resume)
    assert (again.stop_reason, again.step, again.checkpoint) == ("early_stopping", first.step, first.checkpoint)


def test_a_run_stopped_at_an_epochs_end_is_not_evaluated_twice(tmp_path):
    """Stopped by max_steps at an epoch's last batch, the run's final evaluation is that epoch's: resumed,
    it is not run again (the same value counted as no improvement and stopped the run early)."""
    make(tmp_path, "full", max_steps=10, patience=1).fit()  # StreamTask: 5 batches an epoch
    make(tmp_path, "split", max_steps=5, patience=1).fit()
    resumed = make(tmp_path, "split", max_steps=10, patience=1).fit(resume=tmp_path / "split" / "checkpoint")
    assert resumed.stop_reason == "max_steps" and resumed.step == 10
    assert valid_steps(tmp_path, "full") == valid_steps(tmp_path, "split") == [5, 10]


def test_a_resume_that_only_evaluates_saves_the_evaluation(tmp_path):
    """Interrupted at step 4, resumed with max_steps 4: the final evaluation runs once and is saved (each
    resume ran it again, logging it again, and saved nothing)."""
    first = make(tmp_path, max_steps=12, patience=5)
    first.on_step = interrupt_after(3)
    first.fit()
    for _ in range(2):
        make(tmp_path, max_steps=4, patience=5).fit(resume=tmp_path / "run" / "checkpoint")
    assert valid_steps(tmp_path, "run") == [4]


@pytest.mark.parametrize("cfg", [dict(), dict(optimizer="sgd", lr=30.0, clip_norm=0.0, patience=2)],
                         ids=["improving", "diverging"])
def test_a_stop_off_the_evaluation_schedule_leaves_patience_to_the_schedule(tmp_path, cfg):
    """A max_steps stop between scheduled evaluations evaluates there; that evaluation moved the patience count,
    so a run resumed from it judged every later evaluation against one the run that never stopped did not make
    and stopped at another step. Patience counts scheduled evaluations only; best/ keeps the best of all."""
    cfg = dict(eval_every=4, max_steps=16, **cfg)
    full_trainer = make(tmp_path, "full", **cfg)
    full = full_trainer.fit()
    first = make(tmp_path, "split", **{**cfg, "max_steps": 6}).fit()
    assert first.stop_reason == "max_steps" and first.metrics
    second = make(tmp_path, "split", **cfg)
    resumed = second.fit(resume=tmp_path / "split" / "checkpoint")
    assert (resumed.stop_reason, resumed.step) == (full.stop_reason, full.step)
    assert [s for s in valid_steps(tmp_path, "split") if s != 6] == valid_steps(tmp_path, "full")
    assert_same(weights(full_trainer), weights(second))
    logged = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in logged if r["split"] == "valid"}
    best_step = min(losses, key=losses.get)
    assert resumed.best["step"] == best_step == load_checkpoint(tmp_path / "split" / "best").step


@pytest.mark.parametrize("cfg", [dict(eval_every=4), dict(checkpoint_every=4), dict(checkpoint_every=3, eval_every=4),
                                 dict(max_steps=0, epochs=2, checkpoint_every=5, eval_every=3),
                                 dict(max_steps=0, epochs=3, checkpoint_every=5),
                                 dict(optimizer="sgd", lr=30.0, clip_norm=0.0, eval_every=1, patience=2, max_steps=50)],
                         ids=["eval", "checkpoint", "both", "epochs", "epoch-ends", "early-stop"])
def test_the_last_step_is_saved_once(tmp_path, cfg):
    """A run whose last step was saved already (by its evaluation, by --checkpoint_every, by early stopping) wrote
    the whole snapshot a second time, as "step-N.1"."""
    trainer = make(tmp_path, **cfg)
    seen = []
    trainer.on_step = lambda tr: seen.extend(p.name for p in (tmp_path / "run" / "checkpoint").glob("step-*.*"))
    result = trainer.fit()
    snapshots = sorted(p.name for p in (tmp_path / "run" / "checkpoint").iterdir() if p.name.startswith("step-"))
    assert not any("." in name for name in snapshots + seen), snapshots + seen
    assert result.checkpoint.name == f"step-{result.step:08d}"
    assert load_checkpoint(tmp_path / "run" / "checkpoint").trainer["last_metrics"]["_step"] == result.step


def test_ctrl_c_during_the_final_evaluation_still_saves_the_last_step(tmp_path):
    class Interrupting(StreamTask):
        def evaluate(self, model):
            if self.eval_calls == 2:  # the final evaluation at step 12 (epoch ends: 5 and 10)
                os.kill(os.getpid(), signal.SIGINT)
            return super().evaluate(model)

    result = make(tmp_path, task=Interrupting(), max_steps=12).fit()  # (a KeyboardInterrupt escaped)
    assert result.step == 12 and load_checkpoint(tmp_path / "run" / "checkpoint").step == 12


def test_the_exploding_gradient_streak_survives_a_resume(tmp_path):
    cfg = dict(explode_threshold=1e-9, explode_patience=3)  # every norm "explodes": one warning per streak
    with pytest.warns(Warning):
        make(tmp_path, "full", **cfg).fit()
        first = make(tmp_path, "split", **cfg)
        first.on_step = interrupt_after(3)
        first.fit()
        make(tmp_path, "split", **cfg).fit(resume=tmp_path / "split" / "checkpoint")
    assert valid_steps(tmp_path, "full", "warning") == valid_steps(tmp_path, "split", "warning") == [3]


def test_the_result_counts_passes_over_the_data_and_names_its_unit(tmp_path):
    """(The summary said '1 epochs' after two whole passes: the epoch counter moves on at the next step.)"""
    assert make(tmp_path, "a", max_steps=7).fit().epochs_done == pytest.approx(1.4)  # StreamTask: 5 batches
    result = make(tmp_path, "b", max_steps=10).fit()
    assert result.epochs_done == 2.0 and result.unit == "tokens"


def test_a_task_missing_what_the_loop_calls_is_named_before_training(tmp_path):
    from rnnkit.train import TrainTask

    class NoEvaluate(TrainTask):
        def train_batches(self, epoch):
            return StreamTask().train_batches(epoch)

        def loss(self, model, batch, carry, ctx):
            return StreamTask().loss(model, batch, carry, ctx)

    with pytest.raises(TypeError, match="the task NoEvaluate has no evaluate"):
        make(tmp_path, task=NoEvaluate())

    class OtherMetric(StreamTask):
        main_metric = "accuracy"  # evaluate() gives "loss" only

    with pytest.raises(TrainingError, match=r"evaluate\(\) returned \['loss'\], without its main_metric 'accuracy'"):
        make(tmp_path, task=OtherMetric(), max_steps=2).fit()


def test_a_task_that_does_not_subclass_and_namedtuple_batches(tmp_path):
    """The loop needs what its docstring lists, nothing more; batches may be namedtuples of tensors."""
    import collections

    Batch = collections.namedtuple("Batch", "x y")
    inner = StreamTask()

    class Duck:
        main_metric, maximize = "loss", False

        def train_batches(self, epoch):
            return [Batch(b["x"], b["y"]) for b in inner.train_batches(epoch)]

        def loss(self, model, batch, carry, ctx):
            return inner.loss(model, {"x": batch.x, "y": batch.y}, carry, ctx)

        def evaluate(self, model):
            return inner.evaluate(model)

    result = make(tmp_path, task=Duck(), max_steps=3).fit()
    assert result.step == 3 and result.unit == "tokens" and "loss" in result.metrics


class _DictCarry(StreamTask):
    """Carries its state in a dict: checkpoints failed on it ('carried state must be tensors in tuples')."""

    def loss(self, model, batch, carry, ctx):
        assert carry is None or set(carry) == {"s"}
        loss, n, state = super().loss(model, batch, None if carry is None else carry["s"], ctx)
        return loss, n, {"s": state}


_Carried = collections.namedtuple("_Carried", "s")


class _NamedCarry(StreamTask):
    """Carries its state in a namedtuple: a resumed run handed it back as a plain tuple (no ``.s``)."""

    def loss(self, model, batch, carry, ctx):
        loss, n, state = super().loss(model, batch, None if carry is None else carry.s, ctx)
        return loss, n, _Carried(state)


@pytest.mark.parametrize("task", [_DictCarry, _NamedCarry])
def test_carried_state_in_dicts_and_namedtuples_resumes_exactly(tmp_path, task):
    full = make(tmp_path, "full", task=task(), epochs=0)
    full.fit()

    def interrupt(tr):
        if tr.step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    first = make(tmp_path, "split", task=task())
    first.on_step = interrupt
    assert first.fit().stop_reason == "interrupted"
    second = make(tmp_path, "split", task=task())
    assert second.fit(resume=tmp_path / "split" / "checkpoint").step == 12
    assert_same(weights(full), weights(second))


def test_data_sources_fingerprint_what_the_readers_read(tmp_path):
    """A caption folder was hashed whole, an --out inside it or a stray file included (such a run never resumed);
    a pipe, drained by the reader, was hashed as empty, passing any check."""
    from rnnkit.data import Captions, write_captions
    from rnnkit.train.tasks import data_sources

    folder = tmp_path / "caps"
    write_captions(folder, Captions(torch.zeros(2, 1, 4, 4), ["one", "two"]))
    before = data_sources([str(folder)], None)
    (folder / "run").mkdir()
    (folder / "run" / "metrics.jsonl").write_text("{}\n")
    (folder / ".DS_Store").write_bytes(b"x")
    assert data_sources([str(folder)], None) == before
    (folder / "000001.png").write_bytes((folder / "000000.png").read_bytes() + b"\0")  # a named image changes
    assert data_sources([str(folder)], None) != before
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert data_sources([str(fifo)], None) == {"data": [{"unverified": "not a regular file"}], "valid": []}


def test_a_time_budget_stop_on_a_scheduled_step_counts_for_patience(tmp_path):
    """The time budget is checked before the step's scheduled evaluation: fit evaluated it as off the schedule,
    patience never counted it, and the resumed run went on to step 10 where an uninterrupted one stopped at 4."""
    scripted = {2: 1.0, 4: 2.0, 6: 0.5, 8: 0.4, 10: 0.3}

    class Scripted(StreamTask):
        trainer = None

        def evaluate(self, model):
            return {"loss": scripted.get(self.trainer.step, 9.0)}

    def run(name, resume=None, **cfg):
        task = Scripted()
        trainer = make(tmp_path, name, task=task, eval_every=2, patience=1, max_steps=10, **cfg)
        task.trainer = trainer
        if not resume:
            trainer.on_step = lambda tr: setattr(tr, "elapsed", 100.0) if tr.step == 3 and cfg else None
        return trainer.fit(resume=resume)

    full = run("full")
    assert (full.stop_reason, full.step) == ("early_stopping", 4)
    cut = run("cut", time_budget=50.0)
    assert (cut.stop_reason, cut.step) == ("time_budget", 4)
    resumed = run("cut", resume=tmp_path / "cut" / "checkpoint", time_budget=1e6)
    assert (resumed.stop_reason, resumed.step) == ("early_stopping", 4)
