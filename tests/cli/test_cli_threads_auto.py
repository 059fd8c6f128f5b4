"""`rnnkit train ... --threads auto` — documented (CLI help, README): "time 1 thread and all
cores on a batch, keep the faster". Checked: the candidates tried are exactly {all cores, 1}; the
faster one is what torch runs the training with (torch.get_num_threads inside every training step and
after) and what the banner reports; tuning leaves weights/optimizer/RNG untouched, so a run with
--threads auto equals a run with --threads <the chosen count>. Timing is made deterministic by
slowing the forward down at one thread count."""
import json
import re
import time

import pytest
import torch

from rnnkit.cli import main
from rnnkit.train import trainer as trainer_module
from rnnkit.train.tasks.lm import LanguageModelTask

CORES = 3  # the CPUs the trainer sees (usable_cpus, patched: machine-independent)


@pytest.fixture
def env(monkeypatch, tmp_path, files):
    """Slows the loss at thread count env['slow'] (None: never); records the thread count of every
    call of the task's loss, split into tuning calls (before training) and training steps."""
    saved = torch.get_num_threads()
    state = {"slow": None, "calls": [], "set": []}
    monkeypatch.setattr(trainer_module, "usable_cpus", lambda: CORES)
    orig_loss = LanguageModelTask.loss
    orig_set = torch.set_num_threads

    def loss(self, model, batch, carry, ctx):
        n = torch.get_num_threads()
        state["calls"].append((ctx.step, n, torch.is_grad_enabled()))
        if n == state["slow"]:
            time.sleep(0.1)  # a margin no machine noise closes: the tuner keeps the best of 3
        return orig_loss(self, model, batch, carry, ctx)

    def set_threads(n):
        state["set"].append(n)
        orig_set(n)

    monkeypatch.setattr(LanguageModelTask, "loss", loss)
    monkeypatch.setattr(torch, "set_num_threads", set_threads)
    state["data"] = files / "train.txt"
    yield state
    orig_set(saved)


def train(capsys, env, out, threads):
    env["calls"].clear()
    env["set"].clear()
    code = main(["train", "lm", "--data", str(env["data"]), "--max-steps", "4", "--batch_size", "4", "--bptt", "16",
                 "--hidden_size", "8", "--embed_size", "8", "--dropout", "0.3", "--no-progress", "--out", str(out),
                 "--threads", str(threads), "--device", "cpu"])  # (threads are tuned for CPU runs only)
    o, e = capsys.readouterr()
    assert code == 0, e
    return o


@pytest.mark.parametrize("slow,expected", [(CORES, 1), (1, CORES)])
def test_auto_keeps_the_faster_count_and_torch_trains_with_it(tmp_path, capsys, env, slow, expected):
    env["slow"] = slow
    out = train(capsys, env, tmp_path / "o", "auto")
    tuning = env["calls"][:6]
    steps = env["calls"][6:]
    # timed: all cores first, then 1, three times each, on the first batch
    assert [n for _, n, _ in tuning] == [CORES] * 3 + [1] * 3
    assert env["set"] == [CORES, 1, expected]
    # every training step ran with the chosen count, and it is still set afterwards
    assert [s for s, _, _ in steps] == [0, 1, 2, 3] and {n for _, n, _ in steps} == {expected}
    assert torch.get_num_threads() == expected
    assert re.search(rf"on cpu, {expected} thread\(s\)", out), out.splitlines()[0]


def test_auto_with_one_core_does_not_tune(tmp_path, capsys, env, monkeypatch):
    monkeypatch.setattr(trainer_module, "usable_cpus", lambda: 1)
    torch.set_num_threads(1)
    env["set"].clear()
    train(capsys, env, tmp_path / "o", "auto")
    assert env["set"] == [] and all(n == 1 for _, n, _ in env["calls"])


def test_tuning_changes_nothing_but_the_thread_count(tmp_path, capsys, env):
    """--threads auto (choosing 1) gives bit-identical weights to --threads 1: tuning's forward and
    backward passes leave weights, optimizer state and RNG (dropout masks) untouched."""
    from safetensors.torch import load_file

    env["slow"] = CORES
    train(capsys, env, tmp_path / "auto", "auto")
    assert torch.get_num_threads() == 1
    env["slow"] = None
    train(capsys, env, tmp_path / "one", "1")
    a = load_file(str(tmp_path / "auto" / "checkpoint" / "step-00000004" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "checkpoint" / "step-00000004" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = [json.loads(l) for l in (tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    va = [r for r in ma if r.get("split") == "valid"]
    vb = [r for r in mb if r.get("split") == "valid"]
    assert va and [r["loss"] for r in va] == [r["loss"] for r in vb]


def test_explicit_and_bad_values(tmp_path, capsys, env):
    train(capsys, env, tmp_path / "two", "2")
    assert env["set"] == [2] and {n for _, n, _ in env["calls"]} == {2}
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "two").rglob("*"))
    for bad, msg in (("0", "--threads must be >= 1"), ("many", "--threads must be a number or 'auto'")):
        code = main(["train", "lm", "--data", str(env["data"]), "--max-steps", "1", "--out", str(tmp_path / bad),
                     "--no-progress", "--threads", bad])
        _, e = capsys.readouterr()
        assert code == 2 and msg in e
        # refused before anything is read or removed: --overwrite of a finished run keeps it whole
        code = main(["train", "lm", "--data", str(env["data"]), "--max-steps", "1", "--out", str(tmp_path / "two"),
                     "--no-progress", "--overwrite", "--threads", bad])
        _, e = capsys.readouterr()
        assert code == 2 and msg in e
        assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "two").rglob("*")) == before


def test_usable_cpus_follows_the_affinity_mask(monkeypatch):
    """--threads auto times all the CPUs the process may use: under taskset or a cpuset that is fewer than
    os.cpu_count() reports."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert trainer_module.usable_cpus() == 1
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert trainer_module.usable_cpus() == (os.cpu_count() or 1)
