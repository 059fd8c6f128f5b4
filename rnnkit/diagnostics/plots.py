"""PNG figures: gradient flow through time, sweep results, attention heat maps, confusion matrices.

All drawing uses matplotlib's Agg backend (no display needed) through the object API, so nothing
touches pyplot's global state; every function writes one PNG and returns its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .tasks import CELL_LABELS

_COLOURS = {"rnn": "#d62728", "irnn": "#9467bd", "lstm": "#1f77b4", "gru": "#2ca02c"}


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path


def _as_numpy(m) -> np.ndarray:
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().double().numpy()
    return np.asarray(m, dtype=float)


def plot_gradient_flow(flows: Mapping[str, "GradientFlow"] | Sequence[Mapping[str, "GradientFlow"]],  # noqa: F821
                       path: str | Path, *, title: str = "", panel_titles: Sequence[str] | None = None,
                       loss: str = "loss after the last step") -> Path:
    """‖∂L/∂h_t‖ against t on a log scale, one line per cell (each flow's top forward direction,
    ``GradientFlow.headline``).

    ``flows`` maps a cell name ("rnn", "lstm", …, or any label) to its :class:`GradientFlow`; pass a
    list of such mappings for side-by-side panels (e.g. at initialisation and after training). The
    legend gives each curve's decay in orders of magnitude per step. ``loss`` says in the x label where
    the loss whose gradient is drawn was taken.
    """
    panels = [flows] if isinstance(flows, Mapping) else list(flows)
    fig = Figure(figsize=(5.2 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for p, (ax, panel) in enumerate(zip(axes, panels)):
        for name, flow in panel.items():
            norms = flow.h[flow.headline()].numpy()  # the curve its legend's decay describes
            t = np.arange(1, len(norms) + 1)
            keep = norms > 0
            ax.semilogy(t[keep], norms[keep], color=_COLOURS.get(name), lw=1.6,
                        label=f"{CELL_LABELS.get(name, name)} ({flow.decay_per_step():.3f}/step)")
        ax.set_xlabel(f"time step t ({loss})")
        ax.set_ylabel("‖∂L/∂h_t‖")
        if panel_titles:
            ax.set_title(panel_titles[p], fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, title="decay, log10", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_sweep(results: Sequence["RunResult"], path: str | Path) -> Path:  # noqa: F821
    """Steps to solve against T per cell; runs that did not solve within the budget are drawn as ✗ at
    the budget line."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    cells = list(dict.fromkeys(r.cell for r in results))
    lengths = sorted({r.T for r in results})
    budget = max(r.steps_budget for r in results)
    n = len(cells)
    for j, cell in enumerate(cells):
        rs = sorted((r for r in results if r.cell == cell), key=lambda r: r.T)
        # a small horizontal offset per cell so that markers at the same (T, budget) stay visible
        xs = [lengths.index(r.T) + (j - (n - 1) / 2) * 0.08 for r in rs]
        solved = [(x, r.steps_to_solve) for x, r in zip(xs, rs) if r.solved]
        failed = [x for x, r in zip(xs, rs) if not r.solved]
        colour = _COLOURS.get(cell)
        label = CELL_LABELS.get(cell, cell)
        if solved:
            ax.plot(*zip(*solved), "o-", color=colour, label=label)
        if failed:
            ax.plot(failed, [budget] * len(failed), "x", ms=10, mew=2.5, color=colour,
                    label=None if solved else label)
    ax.axhline(budget, color="grey", ls="--", lw=1)
    ax.text(-0.4, budget, "budget (✗ = not solved)", ha="left", va="bottom", fontsize=8, color="grey")
    ax.set_xticks(range(len(lengths)), [str(T) for T in lengths])
    ax.set_xlim(-0.5, len(lengths) - 0.5)
    # the adding problem varies the sequence length; the copy task varies the delay before recall
    ax.set_xlabel("delay before recall" if results[0].task == "copy" else "sequence length T")
    ax.set_ylabel("training steps to solve")
    ax.set_ylim(0, budget * 1.12)
    ax.set_title(f"{results[0].task}: steps to solve within {budget} steps", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def attention_heatmap(weights, path: str | Path, source_tokens: Sequence[str] | None = None,
                      target_tokens: Sequence[str] | None = None, *, title: str = "attention") -> Path:
    """A Seq2Seq attention matrix as a heat map: ``weights`` (T_out, T_in), rows = output steps
    (``target_tokens``), columns = input positions (``source_tokens``); each row normally sums to 1."""
    w = _as_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"rnnkit.diagnostics.attention_heatmap: weights must be 2-D (T_out, T_in), got shape {w.shape}")
    T_out, T_in = w.shape
    for name, toks, n in (("source_tokens", source_tokens, T_in), ("target_tokens", target_tokens, T_out)):
        if toks is not None and len(toks) != n:
            raise ValueError(f"rnnkit.diagnostics.attention_heatmap: {name} has {len(toks)} labels, expected {n} "
                             f"for weights of shape {w.shape}")
    fig = Figure(figsize=(min(2 + 0.35 * T_in, 14), min(1.6 + 0.35 * T_out, 14)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(w, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(np.nanmax(w)) if np.isfinite(w).any() else 1.0, 1e-12))
    ax.set_xticks(range(T_in), source_tokens if source_tokens is not None else range(T_in),
                  rotation=90 if source_tokens is not None else 0, fontsize=8)
    ax.set_yticks(range(T_out), target_tokens if target_tokens is not None else range(T_out), fontsize=8)
    ax.set_xlabel("input")
    ax.set_ylabel("output")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` = how many examples of true class i were predicted as j."""
    t = _as_numpy(y_true).astype(int).ravel()
    p = _as_numpy(y_pred).astype(int).ravel()
    if t.shape != p.shape:
        raise ValueError(f"rnnkit.diagnostics.confusion_matrix: y_true has {t.size} labels, y_pred {p.size}")
    n = num_classes if num_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n):
        raise ValueError(f"rnnkit.diagnostics.confusion_matrix: labels must be in [0, {n}), got "
                         f"[{min(t.min(), p.min())}, {max(t.max(), p.max())}]")
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def plot_confusion_matrix(y_true, y_pred, path: str | Path, labels: Sequence[str] | None = None, *,
                          normalize: bool = False, title: str = "confusion matrix") -> Path:
    """A classifier's confusion matrix as a PNG: rows true class, columns predicted, counts in the cells
    (``normalize=True``: each row divided by its total, i.e. per-class recall on the diagonal)."""
    m = confusion_matrix(y_true, y_pred, len(labels) if labels is not None else None)
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    n = m.shape[0]
    fig = Figure(figsize=(min(2.5 + 0.5 * n, 14), min(2 + 0.5 * n, 14)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    names = list(labels) if labels is not None else [str(i) for i in range(n)]
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(m) / max(m.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.3f})", fontsize=10)
    if n <= 30:
        top = shown.max() if shown.size else 1
        for i in range(n):
            for j in range(n):
                text = f"{shown[i, j]:.2f}" if normalize else str(m[i, j])
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.6 * top else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)
