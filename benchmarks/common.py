"""Timing helpers shared by the rnnkit benchmarks (``bench_layers.py`` and friends).

The machine these benchmarks run on is small and shared, so the same case can move by tens of
percent from one run to the next. Two habits keep comparisons honest, and ``time_alternating``
builds both in:

- every candidate is timed in the same process, in rounds that run each candidate once (the order
  rotates from round to round), so a slow spell hits all of them instead of one;
- the speed-up of a candidate is the median over rounds of the ratio measured *within* a round,
  which is far steadier than the ratio of two medians taken at different times.

``gemm_gflops`` measures what the machine can do at that moment (a float32 matrix product), so
throughput figures can be read against the peak measured in the same run.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

try:  # POSIX: minor page faults and system time per call (where the kernel hands out fresh pages)
    import resource
except ImportError:  # Windows
    resource = None

__all__ = [
    "Timing",
    "time_alternating",
    "gemm_gflops",
    "machine_info",
    "markdown_table",
    "format_rate",
]


@dataclass
class Timing:
    """Result of ``time_alternating``; every time is seconds per call.

    ``medians[name]``: median over rounds. ``ratios[name]``: median over rounds of
    ``t[baseline] / t[name]`` measured in the same round, so > 1 means ``name`` is faster than the
    baseline (1.0 for the baseline itself). ``samples`` and ``round_ratios`` keep every round, in
    round order; ``number[name]`` is how many calls each sample averages over. ``page_faults[name]`` and
    ``system_s[name]``: the process's minor page faults and system CPU seconds per call over the timed
    rounds (empty where the OS cannot say) — a fresh page costs a fault, so a candidate whose large
    allocations go back to the kernel between calls shows it here.
    """

    baseline: str
    medians: dict[str, float]
    ratios: dict[str, float]
    samples: dict[str, list[float]] = field(default_factory=dict)
    round_ratios: dict[str, list[float]] = field(default_factory=dict)
    number: dict[str, int] = field(default_factory=dict)
    page_faults: dict[str, float] = field(default_factory=dict)
    system_s: dict[str, float] = field(default_factory=dict)

    def ratio_range(self, name: str) -> tuple[float, float]:
        """Smallest and largest per-round ratio of ``name`` — a quick look at the noise."""
        r = self.round_ratios[name]
        return min(r), max(r)

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "median_s": self.medians,
            "ratio_vs_baseline": self.ratios,
            "samples_s": self.samples,
            "round_ratios": self.round_ratios,
            "calls_per_sample": self.number,
            "page_faults_per_call": self.page_faults,
            "system_s_per_call": self.system_s,
        }


def training_step(module: torch.nn.Module, x: torch.Tensor, proj: torch.Tensor) -> Callable[[], None]:
    """One timed training step: fresh gradients of ``module``'s parameters and of the leaf ``x`` for the loss
    ⟨module(x) output, proj⟩."""
    params = list(module.parameters())

    def step() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        out, _ = module(x)
        (out * proj).sum().backward()

    return step


def time_alternating(
    candidates: Mapping[str, Callable[[], Any]],
    *,
    baseline: str | None = None,
    repeats: int = 7,
    warmup: int = 2,
    warmup_time: float = 0.2,
    min_time: float = 0.05,
    max_number: int = 10_000,
    max_repeats: int | None = None,
    target_spread: float = 0.1,
    max_time: float = 30.0,
    timer: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time several zero-argument callables against each other, alternating them in one process.

    1. Warm-up: every candidate runs at least ``warmup`` times and, together, for at least
       ``warmup_time`` seconds each (alternating); the last warm-up call calibrates how many calls
       (``number``, at most ``max_number``) one sample needs to last ``min_time`` seconds.
    2. ``repeats`` rounds; in each round every candidate takes one sample (``number`` calls, timed
       together and divided by ``number``). The order rotates by one candidate per round.
       With ``max_repeats`` > ``repeats``, rounds go on (up to ``max_repeats``) while the per-round
       ratios are still spread out — interquartile range above ``target_spread`` × median for some
       candidate — and the timed rounds have taken less than ``max_time`` seconds: a busy machine gets
       more samples, a quiet one is not kept waiting.
    3. Per candidate: the median time, and the median over rounds of ``t[baseline] / t[name]``.

    The garbage collector is paused while timing. Anything that must be synchronised (a GPU stream)
    should be synchronised inside the callables.
    """
    if not candidates:
        raise ValueError("time_alternating: no candidates")
    if repeats < 1 or warmup < 1:
        raise ValueError("time_alternating: repeats and warmup must be >= 1")
    names = list(candidates)
    baseline = names[0] if baseline is None else baseline
    if baseline not in candidates:
        raise ValueError(f"time_alternating: baseline {baseline!r} is not a candidate")

    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        # Warm-up, alternating, and a first estimate of each candidate's time per call.
        last = {n: 0.0 for n in names}
        spent = {n: 0.0 for n in names}
        calls = 0
        while calls < warmup or min(spent.values()) < warmup_time:
            for n in names:
                t0 = timer()
                candidates[n]()
                dt = timer() - t0
                last[n] = dt
                spent[n] += dt
            calls += 1
        number = {n: max(1, min(max_number, math.ceil(min_time / max(last[n], 1e-9)))) for n in names}

        samples: dict[str, list[float]] = {n: [] for n in names}
        faults = {n: 0 for n in names}
        system = {n: 0.0 for n in names}
        limit = max(repeats, max_repeats or repeats)
        started = time.perf_counter()  # the budget is wall time, whatever ``timer`` measures
        r = 0
        while True:
            k = r % len(names)
            for n in names[k:] + names[:k]:
                fn, m = candidates[n], number[n]
                u0 = resource.getrusage(resource.RUSAGE_SELF) if resource else None
                t0 = timer()
                for _ in range(m):
                    fn()
                samples[n].append((timer() - t0) / m)
                if u0 is not None:
                    u1 = resource.getrusage(resource.RUSAGE_SELF)
                    faults[n] += u1.ru_minflt - u0.ru_minflt
                    system[n] += u1.ru_stime - u0.ru_stime
            r += 1
            if r >= limit or (r >= repeats and (time.perf_counter() - started > max_time
                                                 or _spread(samples, baseline) <= target_spread)):
                break
    finally:
        if was_enabled:
            gc.enable()

    base = samples[baseline]
    round_ratios = {n: [b / s for b, s in zip(base, samples[n])] for n in names}
    return Timing(
        baseline=baseline,
        medians={n: statistics.median(samples[n]) for n in names},
        ratios={n: statistics.median(round_ratios[n]) for n in names},
        samples=samples,
        round_ratios=round_ratios,
        number=number,
        page_faults={n: faults[n] / (len(samples[n]) * number[n]) for n in names} if resource else {},
        system_s={n: system[n] / (len(samples[n]) * number[n]) for n in names} if resource else {},
    )


def _spread(samples: Mapping[str, Sequence[float]], baseline: str) -> float:
    """Largest relative interquartile range of the per-round ratios to the baseline."""
    worst = 0.0
    for n, s in samples.items():
        if n == baseline:
            continue
        ratios = [b / x for b, x in zip(samples[baseline], s)]
        if len(ratios) < 2:
            return math.inf
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        worst = max(worst, (q3 - q1) / statistics.median(ratios))
    return worst


def gemm_gflops(
    n: int = 1024,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    repeats: int = 5,
    min_time: float = 0.05,
    warmup_time: float = 0.1,
    timer: Callable[[], float] = time.perf_counter,
) -> float:
    """GFLOP/s of an n×n by n×n matrix product (2·n³ FLOPs) right now: median of ``repeats`` samples."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    c = torch.empty(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def mm() -> None:
        torch.mm(a, b, out=c)
        sync()

    t = time_alternating({"gemm": mm}, repeats=repeats, warmup=2, warmup_time=warmup_time,
                         min_time=min_time, timer=timer)
    return 2.0 * n**3 / t.medians["gemm"] / 1e9


def machine_info() -> dict[str, Any]:
    """What a reader needs to place the numbers: library versions, threads, CPU."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }


def format_rate(value: float, unit: str = "") -> str:
    """Compact human figure: 1234567 → '1.23M', 45600 → '45.6k'."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured markdown table with padded columns. ``align``: one letter per column,
    'l' or 'r' (default: first column left, the rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    ncol = len(headers)
    if any(len(r) != ncol for r in cells):
        raise ValueError("markdown_table: every row needs one cell per header")
    align = align or "l" + "r" * (ncol - 1)
    widths = [max(len(r[i]) for r in cells) for i in range(ncol)]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1)
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
