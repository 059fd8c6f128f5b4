"""The long-range benchmarks: how many training steps each cell needs to solve the adding problem and
the copy-memory task at a given length T — or whether it solves them at all within a budget.

``run_adding(cell, T, steps_budget)`` and ``run_copy(...)`` train one small model (``tasks.py``) with
Adam and global-norm clipping, evaluate on a fixed held-out batch every ``eval_every`` steps, and stop
at the first evaluation that meets the bar:

- adding: test MSE < 0.1 × 0.167 (a tenth of the always-predict-1 baseline);
- copy: per-symbol accuracy on the ``copy_memory`` recalled symbols ≥ ``copy_threshold`` (0.9 by
  default; guessing scores 1/``copy_alphabet``).

``sweep(task, cells, lengths, steps_budget)`` runs every (cell, T), and writes a CSV, a markdown table
and a plot of steps-to-solve against T. Every run is seeded: the same arguments give the same numbers
up to floating-point non-determinism of multithreaded kernels.
"""
from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..clip import ClipStats
from .gradients import GradientFlow, gradient_flow
from .tasks import (ADDING_BASELINE_MSE, CELL_LABELS, COPY_LENGTH, AddingModel, CopyModel, adding_batch,
                    copy_batch)

SOLVED_ADDING_MSE = 0.1 * ADDING_BASELINE_MSE
#: Adam's learning rate per task when ``TrainConfig.lr`` is None (see ``TrainConfig``).
DEFAULT_LR = {"adding": 1e-3, "copy": 1e-2}
#: The copy task's delay when none is given: short enough for LSTM and GRU to solve in a minute or two.
COPY_DELAY = 10


@dataclass
class TrainConfig:
    """Training settings shared by both tasks and all cells; defaults chosen to run in minutes on 2 CPU cores.

    ``lr`` for Adam, the same for every cell; None = the task's ``DEFAULT_LR``: 1e-3 for adding (1e-2
    makes the IRNN diverge at once), 1e-2 for copy (at 1e-3 the GRU is still at 53% accuracy after 4000
    steps at delay 10, where 1e-2 solves it in 400; measured). ``max_norm`` 1.0 (global-norm clipping)
    as is common practice; ``hidden_size`` 64 (Le et al. used 100; 64 keeps a run near a minute);
    ``test_size`` examples form the fixed evaluation batch, scored every ``eval_every`` steps;
    ``threads``: torch threads for the run (None = leave torch's setting).

    Copy memory only: ``copy_memory`` symbols to remember, drawn from an alphabet of ``copy_alphabet``
    (2..9). The defaults, 3 symbols of 4, make a task that LSTM and GRU solve within a few thousand
    steps at delays 5 to 50, and the tanh RNN at delay 5 but not at 50, where it stays at guessing
    (1/4) at lr 1e-2 and 3e-3 alike. Arjovsky et al.'s 10 symbols of 8 (``copy_memory=10,
    copy_alphabet=8``) are solved by neither LSTM nor GRU in 4000 steps even at delay 20 (measured).
    """

    hidden_size: int = 64
    batch_size: int = 50
    lr: float | None = None
    max_norm: float = 1.0
    eval_every: int = 100
    test_size: int = 500
    seed: int = 0
    engine: str = "auto"
    stop_when_solved: bool = True
    copy_threshold: float = 0.9
    copy_memory: int = 3
    copy_alphabet: int = 4
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.copy_memory < 1:
            raise ValueError(f"rnnkit.diagnostics.TrainConfig: copy_memory must be >= 1, got {self.copy_memory}")
        if not 2 <= self.copy_alphabet <= 9:
            raise ValueError(f"rnnkit.diagnostics.TrainConfig: copy_alphabet must be in 2..9 (the generator's "
                             f"digits), got {self.copy_alphabet}")


@dataclass
class RunResult:
    """One (task, cell, T) run. ``steps_to_solve`` is None when the budget ran out first;
    ``metric`` is the last test MSE (adding) or per-symbol accuracy (copy); ``diverged`` says the
    training loss became nan/inf at step ``steps_run`` (the run stopped there); ``history`` the
    (step, metric) evaluations; ``flow`` the gradient flow at the end of training, if asked; ``model``
    the trained model."""

    task: str
    cell: str
    T: int
    steps_budget: int
    steps_to_solve: int | None
    steps_run: int
    metric: float
    best_metric: float
    wall_s: float
    clip_rate: float
    diverged: bool = False
    history: list[tuple[int, float]] = field(default_factory=list)
    flow: GradientFlow | None = None
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def solved(self) -> bool:
        return self.steps_to_solve is not None

    def row(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("history", "flow", "model")}
        d["solved"] = self.solved
        if self.flow is not None:
            d["grad_decay_log10_per_step"] = self.flow.decay_per_step()
        return d


def _train(task: str, cell: str, T: int, steps_budget: int, cfg: TrainConfig, with_flow: bool) -> RunResult:
    if steps_budget < 1:
        raise ValueError(f"rnnkit.diagnostics: steps_budget must be >= 1, got {steps_budget}")
    if cfg.threads:  # for this run only: the caller's thread count comes back afterwards
        saved = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            return _train(task, cell, T, steps_budget, replace(cfg, threads=None), with_flow)
        finally:
            torch.set_num_threads(saved)
    torch.manual_seed(cfg.seed)
    test_seed = 10_000 + T  # the same test set for every cell at this T, a draw of its own (no training batch)
    step_seed = 1_000_003 * (cfg.seed + 1)  # training batch k uses seed step_seed + k
    if task == "adding":
        model: nn.Module = AddingModel(cell, cfg.hidden_size, cfg.engine)
        x_test, y_test = adding_batch(cfg.test_size, T, test_seed)

        def loss_of(x, y):
            return nn.functional.mse_loss(model(x), y)

        def evaluate() -> float:  # test MSE, lower is better
            return float(loss_of(x_test, y_test))

        def solved(m: float) -> bool:
            return m < SOLVED_ADDING_MSE

        def batch(k: int):
            return adding_batch(cfg.batch_size, T, step_seed + k)
    elif task == "copy":
        m, a = cfg.copy_memory, cfg.copy_alphabet
        model = CopyModel(cell, cfg.hidden_size, cfg.engine, alphabet=a)
        x_test, y_test = copy_batch(cfg.test_size, T, test_seed, memory=m, alphabet=a)

        def loss_of(x, y):
            return nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())

        def evaluate() -> float:  # per-symbol accuracy on the recalled symbols, higher is better
            pred = model(x_test)[:, -m:].argmax(-1)
            return float((pred == y_test[:, -m:]).double().mean())

        def solved(m: float) -> bool:
            return m >= cfg.copy_threshold

        def batch(k: int):
            return copy_batch(cfg.batch_size, T, step_seed + k, memory=m, alphabet=a)
    else:
        raise ValueError(f"rnnkit.diagnostics: unknown task {task!r}; expected 'adding' or 'copy'")

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr if cfg.lr is not None else DEFAULT_LR[task])
    stats = ClipStats(max_norm=cfg.max_norm)
    better = min if task == "adding" else max
    history: list[tuple[int, float]] = []
    steps_to_solve = None
    diverged = False
    metric = best = math.nan
    start = time.perf_counter()
    step = 0
    for step in range(1, steps_budget + 1):
        x, y = batch(step)
        loss = loss_of(x, y)
        if not torch.isfinite(loss):  # diverged: nothing more to learn, report it as such
            diverged = True
            metric = math.nan
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        stats.clip(model.parameters())
        opt.step()
        if step % cfg.eval_every == 0 or step == steps_budget:
            model.eval()
            with torch.no_grad():
                metric = evaluate()
            model.train()
            best = metric if math.isnan(best) else better(best, metric)
            history.append((step, metric))
            if steps_to_solve is None and solved(metric):
                steps_to_solve = step
                if cfg.stop_when_solved:
                    break
    wall = time.perf_counter() - start
    flow = None
    if with_flow and not diverged:
        flow = task_gradient_flow(model, task, T, batch_size=32, seed=cfg.seed, copy_memory=cfg.copy_memory)
    return RunResult(task, cell, T, steps_budget, steps_to_solve, step, metric, best, wall,
                     stats.clip_rate, diverged, history, flow, model.eval())


def task_gradient_flow(model: nn.Module, task: str, T: int, *, batch_size: int = 32, seed: int = 0,
                       copy_memory: int = COPY_LENGTH) -> GradientFlow:
    """Gradient flow of a task model's loss on a fresh batch, measured in float64 on a copy of the
    model (so tiny gradients do not underflow and the model itself is untouched). A copy model's
    batch uses its own alphabet and ``copy_memory`` symbols."""
    m = copy.deepcopy(model).double().eval()
    if task == "adding":
        x, y = adding_batch(batch_size, T, seed + 7, dtype=torch.float64)
        return gradient_flow(m.rnn, x, lambda out: nn.functional.mse_loss(m.readout(out), y))
    ids, y = copy_batch(batch_size, T, seed + 7, memory=copy_memory, alphabet=m.alphabet)
    return gradient_flow(m.rnn, m.embed(ids), lambda out: nn.functional.cross_entropy(m.head(out).flatten(0, 1),
                                                                                       y.flatten()))


def run_adding(cell: str, T: int, steps_budget: int, config: TrainConfig | None = None, *,
               with_flow: bool = False, **overrides) -> RunResult:
    """Train ``cell`` on the adding problem of length ``T`` for at most ``steps_budget`` steps.

    ``config`` (or keyword ``overrides`` of ``TrainConfig`` fields) sets the model size and training;
    ``with_flow=True`` also measures the trained model's gradient flow. Returns a :class:`RunResult`.
    """
    cfg = _config(config, overrides)
    return _train("adding", cell, T, steps_budget, cfg, with_flow)


def run_copy(cell: str, T: int, steps_budget: int, config: TrainConfig | None = None, *,
             with_flow: bool = False, **overrides) -> RunResult:
    """Train ``cell`` on copy memory with ``T`` blank steps between the symbols and their recall."""
    cfg = _config(config, overrides)
    return _train("copy", cell, T, steps_budget, cfg, with_flow)


def _config(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    cfg = config or TrainConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"rnnkit.diagnostics: unknown training option {k!r}; expected one of "
                            f"{sorted(asdict(cfg))}")
    return TrainConfig(**{**asdict(cfg), **overrides})


# -- sweeps -----------------------------------------------------------------------------------------
def _run_one(args: tuple) -> RunResult:
    task, cell, T, steps_budget, cfg, with_flow = args
    return _train(task, cell, T, steps_budget, cfg, with_flow)


def sweep(task: str, cells: Sequence[str], lengths: Sequence[int], steps_budget: int,
          config: TrainConfig | None = None, out_dir: str | Path | None = None, *, with_flow: bool = False,
          jobs: int = 1, progress=print) -> list[RunResult]:
    """Run every (cell, T); with ``out_dir``, write ``{task}_results.csv``, ``{task}_results.md`` and
    ``{task}_steps.png`` there. ``progress`` gets one line per finished run (None for silence).

    ``jobs`` > 1 runs that many trainings at once in separate processes, each with
    ``config.threads`` torch threads (1 if unset): these models are small, so on a 2-core machine two
    single-threaded runs side by side finish sooner than one after another with two threads each.
    Results come back in (T, cell) order either way, and each run's numbers do not depend on ``jobs``.
    """
    if task not in ("adding", "copy"):
        raise ValueError(f"rnnkit.diagnostics.sweep: unknown task {task!r}; expected 'adding' or 'copy'")
    if not cells or not lengths:
        raise ValueError(f"rnnkit.diagnostics.sweep: no runs: give at least one cell and one length, got cells "
                         f"{list(cells)} and lengths {list(lengths)}")
    cfg = config or TrainConfig()
    todo = [(task, cell, T, steps_budget, cfg, with_flow) for T in lengths for cell in cells]
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if cfg.threads is None:
            cfg = TrainConfig(**{**asdict(cfg), "threads": 1})
            todo = [(*t[:4], cfg, t[5]) for t in todo]
        # spawn, not fork: a forked child inherits the parent's OpenMP state, which can hang torch
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_one, t) for t in todo]
            results = []
            for f in futures:
                results.append(f.result())
                if progress:
                    progress(format_result(results[-1]))
    else:
        results = []
        for t in todo:
            results.append(_run_one(t))
            if progress:
                progress(format_result(results[-1]))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(results, out / f"{task}_results.csv")
        (out / f"{task}_results.md").write_text(markdown_table(results))
        from .plots import plot_sweep

        plot_sweep(results, out / f"{task}_steps.png")
    return results


def format_result(r: RunResult) -> str:
    name = "MSE" if r.task == "adding" else "acc"
    verdict = (f"solved in {r.steps_to_solve} steps" if r.solved else
               f"diverged (nan loss) at step {r.steps_run}" if r.diverged else f"not solved in {r.steps_budget} steps")
    return (f"{r.task} T={r.T} {CELL_LABELS.get(r.cell, r.cell)}: {verdict} "
            f"(test {name} {r.metric:.4f}, best {r.best_metric:.4f}, {r.wall_s:.1f}s, clipped {100 * r.clip_rate:.0f}%)")


def write_csv(results: Sequence[RunResult], path: str | Path) -> None:
    rows = [r.row() for r in results]
    columns = list(dict.fromkeys(k for row in rows for k in row))  # a diverged run has no gradient column
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)


def markdown_table(results: Sequence[RunResult]) -> str:
    """Rows = cells, columns = T; each entry the steps to solve (✗ = not within the budget), the final
    test metric and the wall time."""
    lengths = sorted({r.T for r in results})
    cells = list(dict.fromkeys(r.cell for r in results))
    by = {(r.cell, r.T): r for r in results}
    task = results[0].task
    metric = "test MSE" if task == "adding" else "symbol acc."
    lines = [f"| cell | " + " | ".join(f"T={T}" for T in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for c in cells:
        cols = []
        for T in lengths:
            r = by.get((c, T))
            if r is None:
                cols.append("")
                continue
            head = (f"**{r.steps_to_solve}**" if r.solved else
                    f"✗ diverged at {r.steps_run}" if r.diverged else f"✗ (>{r.steps_budget})")
            cols.append(f"{head} · {metric} {r.metric:.3g} · {r.wall_s:.0f}s")
        lines.append(f"| {CELL_LABELS.get(c, c)} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"
