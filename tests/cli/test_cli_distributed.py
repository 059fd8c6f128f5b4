"""Data-parallel training: 2 processes under torchrun (gloo, CPU) give the same weights as one process
on the same global batches; Ctrl-C from outside saves a resumable checkpoint; resume is exact."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.train.checkpoint import resolve

PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(resolve(out / "checkpoint") / "model.safetensors")


def run(*args, timeout=240):
    p = subprocess.run([str(a) for a in args], env=ENV, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


COMMON = ("--device", "cpu", "--max-steps", "12", "--batch_size", "16", "--hidden_size", "16", "--embed_size", "8",
          "--lr", "0.01", "--no-progress", "--eval_every", "6")


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(PY).parent)) is None and
                    shutil.which("torchrun") is None, reason="torchrun not installed")
def test_ddp_two_processes_equal_single_process(cli, files, tmp_path):
    # A language model: the carried TBPTT state is sharded by rows and gathered into the checkpoint.
    torchrun = shutil.which("torchrun", path=str(Path(PY).parent)) or shutil.which("torchrun")
    task, data, extra = "lm", "train.txt", ("--bptt", "16")
    assert cli("train", task, "--data", files / data, "--out", tmp_path / "one", *COMMON, *extra)[0] == 0
    run(torchrun, "--standalone", "--nproc-per-node", "2", "-m", "rnnkit", "train", task, "--data", files / data,
        "--out", tmp_path / "two", *COMMON, *extra)
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(PY).parent)) is None and
                    shutil.which("torchrun") is None, reason="torchrun not installed")
def test_ddp_with_a_batch_the_processes_do_not_divide_resumes_exactly(files, tmp_path):
    """Batch 15 on 2 processes: the ranks carry 7 and 8 rows of LM state (the checkpoint gathered equal
    shapes only: the run crashed at its first save) and draw different dropout masks (only rank 0's random
    state was saved): 6 + 6 resumed steps equal 12 in one go, weights bit for bit."""
    torchrun = shutil.which("torchrun", path=str(Path(PY).parent)) or shutil.which("torchrun")
    args = ("-m", "rnnkit", "train", "lm", "--device", "cpu", "--data", files / "train.txt", "--batch_size", "15",
            "--bptt", "16", "--hidden_size", "16", "--embed_size", "8", "--dropout", "0.3", "--lr", "0.01",
            "--no-progress", "--eval_every", "6")
    ddp = (torchrun, "--standalone", "--nproc-per-node", "2")
    run(*ddp, *args, "--max-steps", "12", "--out", tmp_path / "full")
    run(*ddp, *args, "--max-steps", "6", "--out", tmp_path / "cut")
    run(*ddp, *args, "--max-steps", "12", "--out", tmp_path / "cut", "--resume")
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_ctrl_c_saves_resumable_checkpoint_and_resume_is_exact(cli, files, tmp_path):
    args = ("train", "lm", "--device", "cpu", "--data", files / "train.txt", "--batch_size", "4", "--bptt", "16",
            "--hidden_size", "16", "--embed_size", "8", "--no-progress", "--log_every", "1")
    # the uninterrupted reference (in this process; the interrupted run is a real process and a real SIGINT).
    # 2000 steps (~2.5 s here) leave the poller below ample time to interrupt the run before it ends.
    assert cli(*args, "--max-steps", "2000", "--out", tmp_path / "full")[0] == 0
    proc = subprocess.Popen([PY, "-m", "rnnkit", *map(str, args), "--max-steps", "2000", "--out", str(tmp_path / "cut")],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    line = [x for x in err.splitlines() if x.strip()][-1]
    assert "interrupted at step" in line and "resumable checkpoint" in line
    step = int(line.split("interrupted at step ")[1].split(":")[0])
    assert 5 <= step < 2000
    assert cli(*args, "--max-steps", "2000", "--out", tmp_path / "cut", "--resume")[0] == 0
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    for k in full:
        assert torch.equal(full[k], cut[k]), k


def test_a_batch_smaller_than_the_process_count_is_a_usage_error_found_first(cli, tmp_path, monkeypatch):
    """It was found by the trainer after the data was read and the model built, and exited 1 (a failure)."""
    monkeypatch.setenv("WORLD_SIZE", "3")
    code, out, err = cli("train", "classify", "--data", "builtin:sentiment", "--batch_size", "2", "--out",
                         tmp_path / "o", "--max-steps", "1")
    assert code == 2 and "--batch_size 2 is smaller than the 3 processes, which need a row each" in err
    assert out == "" and not (tmp_path / "o").exists()
