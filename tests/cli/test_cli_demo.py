"""``rnnkit demo`` (what ``make demo`` runs) end to end with a one-second budget: it trains, reports
bits per character against the unigram baseline, generates at two temperatures and names its files."""
from __future__ import annotations

import math


def test_demo_runs_and_reports(cli, tmp_path):
    code, out, err = cli("demo", "--time-budget", "1", "--threads", "1", "--out", tmp_path / "demo", "--no-progress")
    assert code == 0, err
    assert "validation bits per character:" in out and "unigram baseline" in out
    assert out.count("--- generated, temperature") == 2
    for name in ("checkpoint", "metrics.jsonl", "loss.png"):
        assert str(tmp_path / "demo" / name) in out and (tmp_path / "demo" / name).exists()
    bits = float(out.split("validation bits per character:")[1].split()[0])
    unigram = float(out.split("unigram baseline")[1].split(";")[0])
    symbols = int(out.split(" symbols")[0].split()[-1])
    assert 0 < bits < math.log2(symbols) and unigram < math.log2(symbols)  # a second of training beats uniform


def test_demo_is_refused_into_a_folder_a_run_is_writing(cli, tmp_path):
    """The demo takes the lock train takes (``rnnkit.cli._out_locked``): it replaced a running train's files."""
    import fcntl
    import os

    import pytest

    from rnnkit.cli import LOCK_NAME

    if not hasattr(os, "fork"):
        pytest.skip("fcntl locks: POSIX")
    out = tmp_path / "run"
    out.mkdir()
    with open(out / LOCK_NAME, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = cli("demo", "--time-budget", "1", "--out", out, "--no-progress")
    assert code == 2 and "is in use by another rnnkit run" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_demo_replaces_only_its_own_run_unless_told(cli, tmp_path):
    """A folder holding another run's checkpoint is refused (the demo replaced it silently); --overwrite
    replaces it, and a demo's own folder is replaced by the next demo without being told."""
    from rnnkit.cli import DEMO_MARK

    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "latest").write_text("step-00000005\n")
    code, _, err = cli("demo", "--time-budget", "1", "--threads", "1", "--out", out, "--no-progress")
    assert code == 2 and "holds a run that rnnkit demo did not write" in err and "--overwrite" in err
    assert (out / "checkpoint" / "latest").read_text() == "step-00000005\n" and not (out / DEMO_MARK).exists()
    for extra in (["--overwrite"], []):
        code, _, err = cli("demo", "--time-budget", "1", "--threads", "1", "--out", out, "--no-progress", *extra)
        assert code == 0, err
        assert (out / DEMO_MARK).exists() and (out / "checkpoint" / "latest").read_text() != "step-00000005\n"
    (out / DEMO_MARK).unlink()  # a demo's folder from before the mark: recognised by its checkpoint
    code, _, err = cli("demo", "--time-budget", "1", "--threads", "1", "--out", out, "--no-progress")
    assert code == 0, err
