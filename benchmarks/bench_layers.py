#!/usr/bin/env python
"""rnnkit.LSTM / GRU / RNN against their torch.nn namesakes, same weights, same inputs.

For every configuration, cell and mode it times, alternating in one process (``common.time_alternating``):

- train: forward + backward of ``loss = <output, R>`` (R a fixed random projection), gradients on
  the parameters and on the input;
- infer: the full sequence under ``torch.no_grad()`` with the modules in eval mode.

and prints a markdown table: tokens/s of each, the GFLOP/s they reach on the matmuls of the
recurrence (forward 2·tokens·G·H·(I+H) per layer-direction with G = 4 / 3 / 1 for LSTM / GRU / RNN;
training counted as 3× that; tokens = B·T, or the sum of the lengths for a variable-length batch),
the speed-up rnnkit / torch.nn (median over rounds of the per-round ratio; > 1 means rnnkit is
faster) and a float32 GEMM probe measured just before each row, so the figures can be read against
what the machine delivered at that moment. It ends with one summary line per performance target.
The progress lines (stderr) also give each side's minor page faults per call: every fault is a fresh
4 KiB page handed out by the kernel, so they show which side's large allocations go back to the
system between calls (and why a side's time can depend on what ran before it in the process).

Variable-length configurations feed the same ``PackedSequence`` (lengths spread evenly over
[T/4, T], shuffled) to both libraries.

    .venv/bin/python benchmarks/bench_layers.py                  # everything (several minutes)
    .venv/bin/python benchmarks/bench_layers.py --quick          # < 1 minute
    .venv/bin/python benchmarks/bench_layers.py --engine auto,fused,native --cells gru --mode train
    .venv/bin/python benchmarks/bench_layers.py --configs var --json results.json
    .venv/bin/python benchmarks/bench_layers.py --list

Timings on a shared machine are noisy; compare ratios, not absolute figures across runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence  # noqa: E402

import rnnkit  # noqa: E402
from common import format_rate, gemm_gflops, machine_info, markdown_table, time_alternating, training_step  # noqa: E402

ENGINES = ("auto", "reference", "fused", "native")

# Performance targets (speed-up rnnkit / torch.nn): every row; GRU and RNN training; variable-length
# training. (Variable-length inference is not held to 2×: torch's packed inference loop already runs at
# 46–73 % of the 1024² GEMM rate on the sum of the lengths, one thread, so 2× would need 92–146 % of it.)
TARGET_ALL = 0.95
TARGET_GRU_RNN_TRAIN = 1.2
TARGET_VARLEN = 2.0


@dataclass(frozen=True)
class Config:
    name: str
    B: int
    T: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    varlen: bool = False

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def label(self) -> str:
        s = f"B{self.B} T{self.T} I{self.I} H{self.H}"
        if self.layers > 1:
            s += f" {self.layers}L"
        if self.bidirectional:
            s += " bi"
        if self.varlen:
            s += " var"
        return s

    def lengths(self) -> torch.Tensor | None:
        """Lengths spread evenly over [T/4, T] (the longest is T), in a fixed shuffled order."""
        if not self.varlen:
            return None
        lo = max(1, math.ceil(self.T / 4))
        lengths = torch.linspace(lo, self.T, self.B).round().to(torch.int64)
        perm = torch.randperm(self.B, generator=torch.Generator().manual_seed(1))
        return lengths[perm]

    def tokens(self) -> int:
        lengths = self.lengths()
        return self.B * self.T if lengths is None else int(lengths.sum())


CONFIGS = [
    Config("b32_t100_h128", 32, 100, 128, 128),
    Config("b64_t100_h512", 64, 100, 512, 512),
    Config("b16_t400_i64_h256", 16, 400, 64, 256),
    Config("b128_t50_h64", 128, 50, 64, 64),
    Config("bi2_b32_t100_h256", 32, 100, 256, 256, layers=2, bidirectional=True),
    Config("var_b64_t200_h256", 64, 200, 256, 256, varlen=True),
    Config("var_b32_t100_h128", 32, 100, 128, 128, varlen=True),
]
# Only run when named in --configs: for smoke tests and quick looks.
EXTRA_CONFIGS = [
    Config("tiny", 4, 8, 16, 16),
    Config("tiny_var", 4, 8, 16, 16, varlen=True),
]
QUICK_CONFIGS = ("b32_t100_h128", "var_b32_t100_h128")

# name → (torch.nn class, rnnkit class, gates per hidden unit, rnnkit mode, label)
CELLS: dict[str, tuple[type, type, int, str, str]] = {
    "lstm": (nn.LSTM, rnnkit.LSTM, 4, "lstm", "LSTM"),
    "gru": (nn.GRU, rnnkit.GRU, 3, "gru", "GRU"),
    "rnn": (nn.RNN, rnnkit.RNN, 1, "rnn_tanh", "RNN tanh"),
}

# Timing settings for common.time_alternating.
# Full runs take at least 7 rounds and go on to 15 while the per-round ratios are spread out (a busy
# machine), within 20 s of timed rounds per case.
FULL_TIMING = dict(repeats=7, max_repeats=15, target_spread=0.1, max_time=20.0,
                   warmup=2, warmup_time=0.3, min_time=0.1)
QUICK_TIMING = dict(repeats=5, warmup=1, warmup_time=0.05, min_time=0.04)


def forward_flops(cfg: Config, gates: int) -> float:
    """Matmul FLOPs of one forward pass: 2·tokens·G·H·(I_l + H) per layer-direction."""
    tokens = cfg.tokens()
    total = 0.0
    for layer in range(cfg.layers):
        layer_in = cfg.I if layer == 0 else cfg.D * cfg.H
        total += cfg.D * 2.0 * tokens * gates * cfg.H * (layer_in + cfg.H)
    return total


def resolved_engine(engine: str, mode: str, x: torch.Tensor, packed: PackedSequence | None, needs_grad: bool,
                    hidden_size: int, module: torch.nn.Module) -> str:
    """What ``engine="auto"`` resolves to for this input (asks rnnkit's dispatcher with what the layer gives
    it: a PackedSequence's rows and batch sizes, as ``dispatch.run_packed`` does, or the padded batch), with
    "+oneDNN" where the fused LSTM hands its dense leading steps to torch's kernel (``native_prefix``)."""
    if engine != "auto":
        return engine
    from rnnkit.engine import dispatch
    from rnnkit.engine.fused.lstm import prefix_steps

    x, lengths = (x, None) if packed is None else (packed.data, packed.batch_sizes)
    chosen = dispatch.choose_engine(engine, mode, x, lengths, needs_grad=needs_grad, hidden_size=hidden_size)
    dense = len(x) if lengths is None else int((lengths == lengths[0]).sum())  # steps every sequence runs
    prefix = dispatch.native_prefix(engine, chosen, mode, x, module.layer_weights()) and prefix_steps(dense) > 0
    return f"auto→{chosen}{'+oneDNN' if prefix else ''}"


def source_revision() -> str:
    """The git commit the benchmark ran on, '+dirty' when rnnkit/ has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "rnnkit"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _output_data(out: Any) -> torch.Tensor:
    return out.data if isinstance(out, PackedSequence) else out


#: The extra candidate of a variable-length training row: torch.nn run on the padded batch.
PADDED = "torch.nn padded"


def padded_step(ref: nn.Module, x: torch.Tensor, packed: PackedSequence, proj: torch.Tensor) -> Callable[[], None]:
    """The other way a practitioner trains on a variable-length batch with torch.nn: run the padded (T, B, I)
    batch whole (oneDNN for a float32 LSTM) and leave the padded steps out of the loss. For a one-direction
    layer that gives the packed run's outputs and gradients at every real step (a step never reads a later
    one); the padded steps' work is wasted instead of skipped."""
    leaf = x.clone().requires_grad_(True)
    weight, _ = pad_packed_sequence(PackedSequence(proj, packed.batch_sizes, packed.sorted_indices,
                                                   packed.unsorted_indices))  # zero past each length
    weight = F.pad(weight, (0, 0, 0, 0, 0, x.shape[0] - weight.shape[0]))
    return training_step(ref, leaf, weight)


def bench_config_cell(cfg: Config, cell: str, modes: list[str], engines: list[str], timing: dict,
                      progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """All modes of one configuration and cell; one result row per (mode, engine)."""
    torch_cls, rk_cls, gates, rk_mode, cell_label = CELLS[cell]
    torch.manual_seed(0)
    ref = torch_cls(cfg.I, cfg.H, num_layers=cfg.layers, bidirectional=cfg.bidirectional)
    rk = {e: rk_cls(cfg.I, cfg.H, num_layers=cfg.layers, bidirectional=cfg.bidirectional, engine=e)
          for e in engines}
    for m in rk.values():
        m.load_state_dict(ref.state_dict())
    modules: dict[str, nn.Module] = {"torch.nn": ref, **{f"rnnkit[{e}]": m for e, m in rk.items()}}

    g = torch.Generator().manual_seed(2)
    x = torch.randn(cfg.T, cfg.B, cfg.I, generator=g)
    lengths = cfg.lengths()
    packed = None if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_rows = packed.data.shape[0] if packed is not None else None
    proj = torch.randn(*((out_rows,) if packed is not None else (cfg.T, cfg.B)), cfg.D * cfg.H, generator=g)
    tokens = cfg.tokens()
    fwd = forward_flops(cfg, gates)
    padded_baseline = packed is not None and not cfg.bidirectional  # (a reverse direction would read padding)

    def make_input(requires_grad: bool) -> tuple[Any, torch.Tensor]:
        """A fresh input (leaf) per candidate, so gradients never mix."""
        if packed is None:
            leaf = x.clone().requires_grad_(requires_grad)
            return leaf, leaf
        leaf = packed.data.clone().requires_grad_(requires_grad)
        return PackedSequence(leaf, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), leaf

    rows = []
    for mode in modes:
        last: dict[str, torch.Tensor] = {}
        candidates: dict[str, Callable[[], None]] = {}
        for name, module in modules.items():
            inp, leaf = make_input(mode == "train")
            if mode == "train":
                module.train()
                params = list(module.parameters())

                def step(module=module, inp=inp, leaf=leaf, params=params, name=name) -> None:
                    for p in params:
                        p.grad = None
                    leaf.grad = None
                    out, _ = module(inp)
                    (_output_data(out) * proj).sum().backward()
                    last[name] = leaf.grad
            else:
                module.eval()

                def step(module=module, inp=inp, name=name) -> None:
                    with torch.no_grad():
                        out, _ = module(inp)
                    last[name] = _output_data(out)
            candidates[name] = step
        if mode == "train" and padded_baseline:
            candidates[PADDED] = padded_step(ref, x, packed, proj)

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        gemm = gemm_gflops(repeats=5, min_time=0.02, warmup_time=0.01, timer=timing["timer"])
        t0 = time.perf_counter()
        result = time_alternating(candidates, baseline="torch.nn", **timing)
        elapsed = time.perf_counter() - t0
        flops = fwd * (3 if mode == "train" else 1)
        expected = last["torch.nn"]
        scale = float(expected.abs().max())
        for e in engines:
            name = f"rnnkit[{e}]"
            lo, hi = result.ratio_range(name)
            diff = float((last[name] - expected).abs().max())
            row = {
                "config": cfg.name,
                "label": cfg.label,
                "cell": cell,
                "cell_label": cell_label,
                "mode": mode,
                "engine": e,
                "resolved_engine": resolved_engine(e, rk_mode, x, packed, needs_grad=mode == "train",
                                                   hidden_size=cfg.H, module=modules[name]),
                "varlen": cfg.varlen,
                "tokens": tokens,
                "flops": flops,
                "torch_s": result.medians["torch.nn"],
                "rnnkit_s": result.medians[name],
                "torch_tok_s": tokens / result.medians["torch.nn"],
                "rnnkit_tok_s": tokens / result.medians[name],
                "torch_gflops": flops / result.medians["torch.nn"] / 1e9,
                "rnnkit_gflops": flops / result.medians[name] / 1e9,
                "ratio": result.ratios[name],
                "ratio_min": lo,
                "ratio_max": hi,
                "gemm_gflops": gemm,
                "load_avg_1min": load,
                "max_abs_diff": diff,
                "ref_max_abs": scale,
                "timing": result.as_dict(),
                # torch.nn on the padded batch, loss over the real steps: median time ÷ rnnkit's median time
                "ratio_vs_padded": (result.medians[PADDED] / result.medians[name]) if PADDED in result.medians
                else None,
            }
            rows.append(row)
            faults = result.page_faults
            paging = (f"  page faults/call {faults['torch.nn']:,.0f} torch.nn, {faults[name]:,.0f} rnnkit"
                      if faults else "")
            progress(f"{cfg.label:<28} {cell_label:<8} {mode:<5} {row['resolved_engine']:<18} "
                     f"speed-up {row['ratio']:.2f}x [{lo:.2f}-{hi:.2f}]  GEMM {gemm:.0f} GFLOP/s{paging}  "
                     f"({elapsed:.1f}s)")
    return rows


def row_target(row: dict[str, Any]) -> float:
    """The speed-up this row must reach: the strictest target that applies to it."""
    target = TARGET_ALL
    if row["mode"] == "train" and row["cell"] in ("gru", "rnn"):
        target = max(target, TARGET_GRU_RNN_TRAIN)
    if row["mode"] == "train" and row["varlen"]:
        target = max(target, TARGET_VARLEN)
    return target


def render_table(rows: list[dict[str, Any]]) -> str:
    headers = ["config", "cell", "mode", "engine", "torch.nn tok/s", "rnnkit tok/s", "torch.nn GFLOP/s",
               "rnnkit GFLOP/s", "speed-up", "per-round", "GEMM GFLOP/s", "target"]
    body = []
    for r in rows:
        target = row_target(r)
        verdict = "ok" if r["ratio"] >= target else "MISS"
        body.append([
            r["label"], r["cell_label"], r["mode"], r["resolved_engine"],
            format_rate(r["torch_tok_s"]), format_rate(r["rnnkit_tok_s"]),
            f"{r['torch_gflops']:.1f}", f"{r['rnnkit_gflops']:.1f}",
            f"**{r['ratio']:.2f}×**", f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}",
            f"{r['gemm_gflops']:.0f}", f"≥{target:g} {verdict}",
        ])
    return markdown_table(headers, body, align="llll" + "r" * 8)


def _worst(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return min(rows, key=lambda r: r["ratio"]) if rows else None


def summaries(rows: list[dict[str, Any]], engines: list[str]) -> list[str]:
    """One line per target and engine: the minimum speed-up over the rows the target covers."""
    lines = []
    for e in engines:
        mine = [r for r in rows if r["engine"] == e]
        checks = [
            (f"{e} never slower than torch.nn: min ratio", mine, TARGET_ALL, "rows"),
            (f"{e} GRU/RNN training ratio min",
             [r for r in mine if r["mode"] == "train" and r["cell"] in ("gru", "rnn")], TARGET_GRU_RNN_TRAIN,
             "GRU/RNN training rows"),
            (f"{e} variable-length training ratio min", [r for r in mine if r["mode"] == "train" and r["varlen"]],
             TARGET_VARLEN, "variable-length training rows"),
        ]
        for title, subset, target, what in checks:
            w = _worst(subset)
            if w is None:
                lines.append(f"- {title}: n/a (no {what} in this run)")
                continue
            verdict = "met" if w["ratio"] >= target else "MISSED"
            misses = sum(r["ratio"] < target for r in subset)
            extra = "" if not misses else f", {misses} of {len(subset)} rows below"
            lines.append(f"- {title} {w['ratio']:.2f} ({w['label']}, {w['cell_label']} {w['mode']}) "
                         f"— target ≥ {target:g}: {verdict}{extra}")
    return lines


def padded_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The variable-length training rows against the other torch.nn baseline (no target: the 2× goal is
    against the packed path): torch.nn on the padded batch, which wastes the padded steps' work but runs
    torch's dense kernels (oneDNN for a float32 LSTM). Ratio of median times."""
    with_padded = [r for r in rows if r.get("ratio_vs_padded") is not None]
    if not with_padded:
        return []
    lines = ["- variable-length training against torch.nn on the padded batch (loss over the real steps; "
             "ratio of median times):"]
    lines += [f"  {r['label']} {r['cell_label']}: {r['ratio_vs_padded']:.2f}×" for r in with_padded]
    return lines


def select_configs(spec: str | None, quick: bool) -> list[Config]:
    """``--configs``: comma-separated names or substrings of names (``var`` = every variable-length one).
    Extra configs (``tiny``…) are only picked when named. Default: all, or the quick set with --quick."""
    if spec is None:
        return [c for c in CONFIGS if not quick or c.name in QUICK_CONFIGS]
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = []
    for c in CONFIGS:
        if any(w in c.name for w in wanted):
            chosen.append(c)
    for c in EXTRA_CONFIGS:  # by name or name prefix only: 'var' must not pull in 'tiny_var'
        if any(c.name.startswith(w) for w in wanted):
            chosen.append(c)
    if not chosen:
        names = ", ".join(c.name for c in CONFIGS + EXTRA_CONFIGS)
        raise SystemExit(f"bench_layers: no config matches {spec!r}; known: {names}")
    return chosen


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad or value!r}; expected a comma list of {allowed}")
    return list(dict.fromkeys(items))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and configs (< 1 minute)")
    p.add_argument("--cells", default="lstm,gru,rnn", type=lambda v: parse_list(v, tuple(CELLS), "cell"),
                   help="comma list of lstm, gru, rnn (default: all)")
    p.add_argument("--configs", default=None,
                   help="comma list of config names or substrings (see --list); 'tiny' for a smoke run")
    p.add_argument("--mode", default="both", choices=("train", "infer", "both"))
    p.add_argument("--engine", default="auto", type=lambda v: parse_list(v, ENGINES, "engine"),
                   help="rnnkit engine(s) to compare with torch.nn, comma list (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds per case (default: at least 7, up to 15 if noisy; quick: 5)")
    p.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                   help="wall clock (default), or this process's CPU time — steadier on a busy machine, "
                        "meaningful with --threads 1 only (idle worker threads spin and count)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds each timed sample lasts at least (default 0.1, quick 0.04)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write all results (and raw samples) here")
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    args = p.parse_args(argv)

    if args.list:
        for c in CONFIGS + EXTRA_CONFIGS:
            tags = ("quick " if c.name in QUICK_CONFIGS else "") + ("extra" if c in EXTRA_CONFIGS else "")
            print(f"{c.name:<22} {c.label:<30} {tags}")
        return 0
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    timing = dict(QUICK_TIMING if args.quick else FULL_TIMING)
    if args.repeats is not None:
        if args.repeats < 1:
            p.error("--repeats must be >= 1")
        timing["repeats"] = args.repeats
    if args.min_time is not None:
        if args.min_time < 0:
            p.error("--min-time must be >= 0")
        timing["min_time"] = args.min_time
    timing["timer"] = time.process_time if args.timer == "cpu" else time.perf_counter
    if args.timer == "cpu" and torch.get_num_threads() > 1:
        print("bench_layers: warning: --timer cpu with more than one thread counts spinning worker threads; "
              "use --threads 1", file=sys.stderr)
    configs = select_configs(args.configs, args.quick)
    modes = ["train", "infer"] if args.mode == "both" else [args.mode]

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    info = machine_info()
    info["timer"] = args.timer
    info["rnnkit_revision"] = source_revision()
    gemm_start = gemm_gflops(repeats=7, timer=timing["timer"])
    progress(f"# torch {info['torch']}, {info['threads']} threads, GEMM 1024² fp32 {gemm_start:.0f} GFLOP/s; "
             f"{len(configs)} configs × {len(args.cells)} cells × {len(modes)} modes, engines {args.engine}")
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for cfg in configs:
        for cell in args.cells:
            rows.extend(bench_config_cell(cfg, cell, modes, args.engine, timing, progress))
    gemm_end = gemm_gflops(repeats=7, timer=timing["timer"])
    wall = time.perf_counter() - t_start

    clock = "" if args.timer == "wall" else ", timed in process CPU seconds"
    print(f"rnnkit ({info['rnnkit_revision']}) vs torch.nn — torch {info['torch']} CPU, "
          f"{info['threads']} threads{clock}, float32; GEMM (1024×1024 fp32 matmul) {gemm_start:.0f} GFLOP/s "
          f"at start, {gemm_end:.0f} at end.")
    rounds = f"{timing['repeats']}" if timing.get("max_repeats", 0) <= timing["repeats"] else \
        f"{timing['repeats']}–{timing['max_repeats']}"
    print(f"Median of {rounds} alternating rounds after warm-up; speed-up = median per-round "
          "ratio torch.nn time / rnnkit time (> 1: rnnkit faster); per-round = its range. "
          "GFLOP/s = recurrence matmuls (train = 3× forward); var = PackedSequence, lengths over [T/4, T].")
    print()
    print(render_table(rows))
    print()
    for line in summaries(rows, args.engine):
        print(line)
    for line in padded_lines(rows):
        print(line)
    best = max([gemm_start, gemm_end] + [r["gemm_gflops"] for r in rows])
    cpus = os.cpu_count() or 1
    if args.timer == "cpu":  # CPU time does not count time spent descheduled: only a slow GEMM is a sign
        busy = [r for r in rows if r["gemm_gflops"] < 0.6 * best]
        why = f"GEMM probe below 60 % of its best, {best:.0f} GFLOP/s"
    else:
        busy = [r for r in rows if r["gemm_gflops"] < 0.6 * best or r["load_avg_1min"] > cpus]
        why = f"GEMM probe below 60 % of its best, {best:.0f} GFLOP/s, or 1-minute load above {cpus}"
    if busy:
        print(f"- NOTE: {len(busy)} of {len(rows)} rows ran on a busy machine ({why}); their ratios are unreliable"
              + ("" if args.timer == "cpu" else " — consider --threads 1 --timer cpu"))
    suspicious = [r for r in rows if r["max_abs_diff"] > 1e-2 * max(1.0, r["ref_max_abs"])]
    for r in suspicious:
        print(f"- WARNING: {r['label']} {r['cell_label']} {r['mode']} {r['engine']}: results differ from "
              f"torch.nn by {r['max_abs_diff']:.3g} (largest |value| {r['ref_max_abs']:.3g})")
    progress(f"# done in {wall:.0f}s")

    if args.json:
        payload = {
            "machine": info,
            "gemm_gflops_start": gemm_start,
            "gemm_gflops_end": gemm_end,
            "timing": {k: v for k, v in timing.items() if k != "timer"},
            "args": {k: v for k, v in vars(args).items() if k != "list"},
            "configs": [asdict(c) for c in configs],
            "targets": {"all": TARGET_ALL, "gru_rnn_train": TARGET_GRU_RNN_TRAIN, "varlen": TARGET_VARLEN},
            "wall_s": wall,
            "results": rows,
            "summary": summaries(rows, args.engine),
        }
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
