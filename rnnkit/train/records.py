"""What a run leaves behind besides the checkpoint: a metrics log and a loss curve.

``metrics.jsonl`` has one JSON object per line: ``{"split": "train", "step": …, "loss": …, "lr": …,
"grad_norm": …, "grad_norm_max": …, "clip_rate": …, "tokens_per_s": …}`` every ``log_every`` steps
(``grad_norm``: the mean global norm before clipping over those steps), ``{"split": "valid", "step": …,
<the task's metrics>}`` at each evaluation, and ``{"split": "warning", "step": …, "kind":
"exploding"|"nonfinite"|"vanishing", "value": …, "message": …}`` when the gradient monitor warns. ``loss.png`` plots both losses
against the step (matplotlib's Agg canvas directly, so no global backend is switched and no display
is needed).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float in it (nested in dicts, lists, tuples) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    return [finite_or_none(v) for v in value] if isinstance(value, (list, tuple)) else value


def strict_json(obj: Any) -> str:
    """JSON text for files and ``--json`` output: a non-finite number (an infinite ratio to a zero baseline,
    a NaN loss) is written as null, as metrics.jsonl writes it (``Infinity`` and ``NaN`` are not JSON, and
    strict parsers refuse them)."""
    return json.dumps(finite_or_none(obj), allow_nan=False)


class MetricsLog:
    """Appends records to a JSON-lines file (line-buffered, so a killed run keeps what it logged)."""

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:  # drop what a crashed run logged after the checkpoint it resumes from
            kept = [r for r in self.read(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(strict_json(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(strict_json(record) + "\n")

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict[str, Any]]:
        p = Path(path)
        if not p.is_file():
            return []
        out = []
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash ends the log
        return out


def plot_loss(records: list[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> Path | None:
    """Writes the training and validation loss curves to a PNG; returns its path (None: nothing to plot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [(r["step"], r["loss"]) for r in records if r.get("split") == "train" and r.get("loss") is not None]
    valid = [(r["step"], r["loss"]) for r in records if r.get("split") == "valid" and r.get("loss") is not None]
    if not train and not valid:
        return None
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        ax.plot(*zip(*train), label="train", lw=1.2)
    if valid:
        ax.plot(*zip(*valid), "o-", label="validation", lw=1.5, ms=4)
    ax.set_xlabel("step")
    per_token = any(k.startswith("bits_per_") for r in records for k in r)
    ax.set_ylabel("loss (nats per token)" if per_token else "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out
