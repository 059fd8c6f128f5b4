"""Smoke test of benchmarks/bench_layers.py: it runs end to end on a tiny configuration and prints a
markdown table with a speed-up for every row and the summary lines. No timing assertions — timings
on a shared machine say nothing about correctness."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_layers.py"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def test_bench_layers_tiny_subprocess(tmp_path):
    out_json = tmp_path / "bench.json"
    # one thread: on a busy machine two threads spend their time waiting for each other at barriers
    cmd = [sys.executable, str(BENCH), "--quick", "--configs", "tiny", "--repeats", "5", "--min-time", "0.005",
           "--threads", "1", "--json", str(out_json)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout

    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| config"))
    assert re.match(r"^\|[:\-|]+\|$", lines[header + 1]), lines[header + 1]
    rows = [line for line in lines[header + 2 :] if line.startswith("|")]
    # tiny and tiny_var × LSTM, GRU, RNN × train, infer
    assert len(rows) == 12, out
    for cell in ("LSTM", "GRU", "RNN tanh"):
        assert any(f"| {cell} " in r for r in rows), cell
    for row in rows:
        assert re.search(r"\*\*\d+\.\d\d×\*\*", row), row  # the speed-up column
        assert "auto" in row

    for prefix in ("- auto never slower than torch.nn: min ratio", "- auto GRU/RNN training ratio min",
                   "- auto variable-length training ratio min"):
        assert any(line.startswith(prefix) for line in lines), prefix
    assert "WARNING" not in out  # rnnkit and torch.nn agreed on outputs / input gradients
    # the other torch.nn baseline of the variable-length training rows: the padded batch
    padded = lines.index(next(line for line in lines if line.startswith("- variable-length training against torch.nn")))
    assert all(re.match(r"^  B4 T8 I16 H16 var (LSTM|GRU|RNN tanh): \d+\.\d\d×$", line)
               for line in lines[padded + 1 : padded + 4]), lines[padded : padded + 4]

    data = json.loads(out_json.read_text())
    assert len(data["results"]) == 12
    for r in data["results"]:
        assert r["ratio"] > 0 and r["torch_tok_s"] > 0 and r["rnnkit_tok_s"] > 0
        assert len(r["timing"]["samples_s"]["torch.nn"]) == 5
    assert data["gemm_gflops_start"] > 0


def test_common_time_alternating_and_table():
    common = _load("bench_common", ROOT / "benchmarks" / "common.py")
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1

    def b():
        calls["b"] += 1
        sum(range(200))

    t = common.time_alternating({"a": a, "b": b}, repeats=5, warmup=1, warmup_time=0.0, min_time=0.001)
    assert t.baseline == "a" and t.ratios["a"] == pytest.approx(1.0)
    assert len(t.samples["a"]) == len(t.samples["b"]) == len(t.round_ratios["b"]) == 5
    assert all(v > 0 for v in t.medians.values()) and calls["a"] > 5 and calls["b"] > 5

    table = common.markdown_table(["x", "y"], [["1", "2"], ["long", "3"]])
    assert table.splitlines()[1] == "|:-----|--:|"
    assert common.gemm_gflops(n=64, repeats=5, min_time=0.001) > 0


@pytest.mark.skipif(sys.platform == "win32", reason="page faults are counted through POSIX getrusage")
def test_common_time_alternating_counts_page_faults():
    """A candidate that writes to fresh pages on every call shows about a fault per page; one that only
    computes shows few."""
    import mmap

    common = _load("bench_common", ROOT / "benchmarks" / "common.py")
    pages = 1024

    def fresh_pages():
        with mmap.mmap(-1, pages * mmap.PAGESIZE) as m:
            for i in range(0, len(m), mmap.PAGESIZE):
                m[i] = 1

    def compute():
        sum(range(200))

    t = common.time_alternating({"compute": compute, "fresh": fresh_pages}, repeats=3, warmup=1,
                                warmup_time=0.0, min_time=0.001)
    assert t.page_faults["fresh"] >= 0.9 * pages
    assert t.page_faults["compute"] < 0.1 * pages
    assert t.system_s["fresh"] >= 0 and set(t.as_dict()["page_faults_per_call"]) == {"compute", "fresh"}


def test_bench_floor_tiny_subprocess():
    """benchmarks/bench_floor.py runs end to end and prints one row per cell with its ceiling."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_floor.py"), "--configs", "tiny", "--repeats", "3",
           "--min-time", "0.005", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| B4 T8")]
    assert [r.split("|")[2].strip() for r in rows] == ["LSTM", "GRU", "RNN tanh"], proc.stdout
    for row in rows:
        assert len(re.findall(r"\d+\.\d\d×", row)) == 2 and re.search(r"\d+%", row), row


def test_bench_products_quick_subprocess():
    products = pytest.importorskip("rnnkit.engine.fused.products")
    if not products.ONEDNN:
        pytest.skip("this torch has no oneDNN")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_products.py"), "--quick", "--repeats", "3", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "×" in line]
    assert len(rows) == 3, proc.stdout
    torch = pytest.importorskip("torch")
    packed = pytest.importorskip("rnnkit.engine.fused.packed_gemm").available(torch.float32)
    # the quick set: 32×128·128×512 and 32×512·512×128 (65,536 values: MKL's packed GEMM where it loaded),
    # 128×64·64×192 (addmm)
    assert [r.rstrip(" |").split("|")[-1].strip() for r in rows] == ["MKL packed" if packed else "addmm"] * 2 + ["addmm"]
    for row in rows:
        assert len(re.findall(r"\d+\.\d\d×", row)) == (2 if packed else 1), row


def test_bench_products_linear_quick_subprocess():
    products = pytest.importorskip("rnnkit.engine.fused.products")
    if not products.ONEDNN:
        pytest.skip("this torch has no oneDNN")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_products.py"), "--linear", "--quick", "--repeats", "3",
           "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "×" in line]
    # the quick set: 3200×128·128×128 and ·128×384 (short reductions: MKL), 3200×384·384×128 (oneDNN, but for MKL
    # where torch's MKL has the packed GEMM)
    torch = pytest.importorskip("torch")
    packed = pytest.importorskip("rnnkit.engine.fused.packed_gemm").available(torch.float32)
    assert [r.rstrip(" |").split("|")[-1].strip() for r in rows] == ["MKL", "MKL", "MKL" if packed else "oneDNN"], \
        proc.stdout


def test_bench_step_kernels_tiny_subprocess():
    step_kernels = pytest.importorskip("rnnkit.engine.fused.step_kernels")
    if not step_kernels.available():
        pytest.skip(f"step kernels: {step_kernels.WHY_NOT}")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_step_kernels.py"), "--configs", "tiny", "--repeats", "3",
           "--min-time", "0.005", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| B4 T8 H16")]
    assert [(r.split("|")[2].strip(), r.split("|")[3].strip()) for r in rows] == [
        ("LSTM", "plain"), ("LSTM", "layer_norm"), ("GRU", "plain"), ("GRU", "layer_norm"), ("RNN", "plain"),
        ("RNN", "bidirectional")], proc.stdout
    for row in rows:
        assert re.search(r"\*\*\d+\.\d\d×\*\*", row), row
    # layer norm's rows also give its time over the plain step's, both ways
    assert [len(re.findall(r"\d+\.\d\d×", r)) for r in rows] == [1, 3, 1, 3, 1, 1], rows
