"""The trainer under torchrun (2 processes, gloo, CPU): a loss that turns non-finite on one rank only stops
every rank, the rank whose own loss is finite says how many processes diverged, and every rank names
the last checkpoint (which rank 0 alone wrote)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PY = sys.executable
TORCHRUN = shutil.which("torchrun", path=str(Path(PY).parent)) or shutil.which("torchrun")
HERE = Path(__file__).parent

SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {here!r})
    import torch
    from rnnkit.train import TrainConfig, Trainer, TrainingError
    from train_toy import StreamTask, TinyLM

    rank = int(os.environ["RANK"])
    torch.manual_seed(0)
    task = StreamTask(poison_at=3 if rank == 1 else None)  # rank 1's loss is NaN from step 4 on
    trainer = Trainer(TinyLM(), task, TrainConfig(max_steps=8, lr=0.02, seed=0, eval_every=2),
                      out_dir={out!r}, model_type="tiny", model_config={{"vocab": 5, "hidden": 8}},
                      vocab={{"tokens": list("abcde")}}, progress=False)
    try:
        trainer.fit()
    except TrainingError as e:
        print(f"rank {{rank}}: {{e}}", flush=True)
        sys.exit(3)
    print(f"rank {{rank}}: finished", flush=True)
""")


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")
def test_a_loss_that_diverges_on_one_rank_stops_every_rank(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), out=str(tmp_path / "run")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", str(script)], env=env,
                       capture_output=True, text=True, timeout=240)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-3000:]
    assert "finished" not in p.stdout, out[-3000:]
    # rank 0's own loss is finite: it names the count; rank 1 names its own loss
    assert "rank 0: training diverged at step 4" in p.stdout, out[-3000:]
    assert "loss is not finite on 1 of the 2 processes" in p.stdout, out[-3000:]
    assert "rank 1: training diverged at step 4" in p.stdout and "loss is nan" in p.stdout, out[-3000:]
    # both name the checkpoint of the evaluation at step 2, which rank 0 wrote
    assert p.stdout.count("the last good checkpoint is") == 2, out[-3000:]


@pytest.mark.parametrize("gpus, device, launcher, expected", [
    (0, "auto", "torchrun", "cpu"), (2, "auto", "torchrun", "cuda:1"),
    (1, "auto", "torchrun", "cpu"),  # 2 processes, 1 GPU: both on the CPU
    (1, "cuda", "torchrun", "refused"), (2, "cuda:0", "torchrun", "refused"), (0, "cpu", "torchrun", "cpu"),
    (2, "auto", "other", "cuda:1"), (2, "cuda", "other", "cuda:1"),  # 2 nodes of 2 GPUs: 4 processes in all
    (1, "auto", "other", "refused")])
def test_each_process_gets_a_gpu_of_its_own_or_none(monkeypatch, gpus, device, launcher, expected):
    """Local rank 1 (no process group is joined: init_process_group is faked): under torchrun, 2 processes on
    one machine; under a launcher that sets no LOCAL_WORLD_SIZE (SLURM, mpirun), 4 processes on 2 machines."""
    from rnnkit.train import distributed
    from rnnkit.train.options import OptionError

    monkeypatch.setenv("WORLD_SIZE", "2" if launcher == "torchrun" else "4")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    if launcher == "torchrun":
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    else:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    joined = []
    monkeypatch.setattr(distributed.dist, "init_process_group", joined.append)
    if expected == "refused":
        with pytest.raises(OptionError, match="GPU"):
            distributed.init(device)
        assert not joined
        return
    info, dev = distributed.init(device)
    assert str(dev) == expected and info.rank == 1 and info.world_size == (2 if launcher == "torchrun" else 4)
    assert joined == ["cpu:gloo,cuda:nccl" if expected.startswith("cuda") else "gloo"]
