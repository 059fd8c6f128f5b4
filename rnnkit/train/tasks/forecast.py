"""``rnnkit train forecast``: one-step-ahead forecasting of the numeric columns of a CSV.

Training windows of ``window + 1`` consecutive steps are cut from the training series (all of them,
shuffled each epoch); the model standardises with the training series' mean and scale (stored in
the checkpoint) and learns to predict every next step of a window. Evaluation walks the validation
series one step at a time, with the end of the training series as context, and reports MAE (main
metric) and RMSE next to the naive last-value forecast ŷ_t = y_{t−1} (``mae_ratio`` < 1: better); its
``loss`` is the training objective on the validation series' windows (standardised units, as in training).

``predict`` reads one history per line — values separated by commas or spaces (several series: time
steps separated by ``;``, series by ``,``) — and writes the forecast of the next step (``--steps N``: of the
next N, fed back one at a time or, ``--method direct``, from the direct head) in the same format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from ...data import DataError, read_series
from ...data.readers import Series
from .. import metrics as M
from ..trainer import StepContext
from .base import Task, check_data_config, device_of


@dataclass
class ForecastData:
    """Data options of ``rnnkit train forecast``.

    columns: comma-separated column names (or 0-based indices; a number a header names a column is that
    name) to forecast; "" = every numeric column (""). window: steps of history per training example (50).
    valid_fraction: the tail of --data held out without --valid (0.2). header: whether the first row names
    the columns — auto: when none of its cells is a number; yes for names that are numbers, such as years
    ("auto").
    """

    columns: str = ""
    window: int = 50
    valid_fraction: float = 0.2
    header: Literal["auto", "yes", "no"] = "auto"

    def __post_init__(self) -> None:
        check_data_config(self, "window")


def _column_list(columns: str) -> list[str | int] | None:
    """``--columns`` "a,b" or "0,2" → names and 0-based indices; "" → None (every numeric column)."""
    if not columns:
        return None
    return [int(c) if c.strip().lstrip("-").isdigit() else c.strip() for c in columns.split(",")]


def _pick(series: Series, wanted: list[str | int], source: str) -> Series:
    """The ``wanted`` columns of a series already read (a built-in one), by name or index."""
    names = list(series.columns)
    use = []
    for c in wanted:
        if isinstance(c, int) and str(c) in names:
            use.append(names.index(str(c)))  # (a name that is a number: the name, not an index)
        elif isinstance(c, int):
            if not -len(names) <= c < len(names):
                raise DataError(f"{source}: --columns: no column {c} (the series has {len(names)}: {names})")
            use.append(c % len(names))
        elif c in names:
            use.append(names.index(c))
        else:
            raise DataError(f"{source}: --columns: no column {c!r} (expected one of {names})")
    return Series(series.values[:, use], [names[j] for j in use])


class ForecastTask(Task):
    name = "forecast"
    model_type = "forecaster"
    data_config = ForecastData
    derived = ("num_series", "num_exogenous")
    main_metric = "mae"
    maximize = False
    train_defaults = {"lr": 3e-3, "batch_size": 32, "epochs": 20}
    later_options = ("header",)
    model_defaults = {"hidden_size": 64}
    _saved_context: Tensor | None = None  # the end of the training series, from a checkpoint

    @classmethod
    def read(cls, paths: Sequence[str], data: ForecastData) -> Series:
        return read_series(paths[0], columns=_column_list(data.columns),
                           header={"auto": None, "yes": True, "no": False}[data.header])

    @classmethod
    def load_splits(cls, data_paths, valid_paths, data: ForecastData, seed: int, valid_fraction: float = 0.1):
        train, valid, how = super().load_splits(data_paths, valid_paths, data, seed, valid_fraction)
        wanted = _column_list(data.columns)
        if wanted and data_paths[0].startswith("builtin:"):  # a file picks its columns as it is read
            train = _pick(train, wanted, data_paths[0])
            if not valid_paths:
                valid = _pick(valid, wanted, data_paths[0])
        return train, valid, how

    def fit(self, train: Series) -> None:
        self.columns = list(train.columns)
        self.train_values = train.values

    def data_note(self) -> str:
        """The columns forecast (text columns, and the unnamed row numbers pandas writes, are left out), and
        that they are numbered where the first row was taken for values."""
        numbered = all(c.isdigit() for c in self.columns) and self.data.header == "auto"
        hint = " (no header row: its cells are numbers; --header yes if it names the columns)" if numbered else ""
        return f"; {len(self.columns)} series: {', '.join(self.columns)}{hint}"

    def vocab_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"columns": self.columns}
        if self.train_values is not None:  # the end of the training series: evaluation's first context
            state["context"] = self.train_values[-self.data.window:].tolist()
        return state

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.columns = state["columns"]
        self.train_values = None
        context = state.get("context")
        try:
            values = torch.tensor(context, dtype=torch.float32) if context is not None else None
        except (TypeError, ValueError):
            values = None
        ok = values is not None and values.dim() == 2 and values.shape[1] == len(self.columns) and bool(
            torch.isfinite(values).all())
        self._saved_context = values if ok else None  # (older checkpoints: none)

    def drop_saved_context(self) -> None:
        """``rnnkit evaluate --context none``: score a series on its own history, not as the continuation of the
        end of the training split that the checkpoint keeps."""
        self._saved_context = None

    def evaluation_note(self) -> str | None:
        """What ``rnnkit evaluate`` prints about the history its first forecasts start from."""
        if self.train_values is not None:
            return None
        if self._saved_context is not None:
            return (f"scored as the continuation of the last {len(self._saved_context)} steps of the training "
                    f"split, kept in the checkpoint; --context none scores the file on its own history")
        return "scored on the file's own history: its first step has no forecast"

    def _context(self) -> Tensor | None:
        """The last ``window`` steps of the training series: from the data, else from the checkpoint."""
        if self.train_values is not None:
            return self.train_values[-self.data.window:]
        return self._saved_context

    def derived_config(self) -> dict[str, Any]:
        return {"num_series": len(self.columns), "num_exogenous": 0}

    def prepare_model(self, model: nn.Module) -> None:
        horizon = model.config.horizon
        if horizon > self.data.window:  # checked before training, not at its first step
            raise DataError(f"--horizon {horizon} needs --window >= {horizon}: each training window holds "
                            f"window + 1 = {self.data.window + 1} steps, and the direct head learns to forecast "
                            f"{horizon} steps from the first")
        model.fit_scaler(self.train_values.unsqueeze(0))  # (1, T, S): scale from the training data only

    def _check(self, series: Series, what: str) -> Tensor:
        """The series' values with its columns in the model's order: matched by name (in any order); by
        position only where one side has no header (columns named by number, ``read_series``)."""
        names = list(series.columns)
        if names == self.columns:
            return series.values
        if sorted(names) == sorted(self.columns) and len(set(names)) == len(names):
            return series.values[:, [names.index(c) for c in self.columns]]
        unnamed = all(c.isdigit() for c in names) or all(c.isdigit() for c in self.columns)
        if unnamed and len(names) == len(self.columns):
            return series.values
        raise DataError(f"{what} has columns {names}, the model forecasts {self.columns} (matched by name)")

    def set_data(self, train, valid) -> None:
        if train is not None:
            self.train_values = self._check(train, "the training series")
            if len(self.train_values) < self.data.window + 1:
                raise DataError(f"the training series has {len(self.train_values)} steps, fewer than "
                                f"--window {self.data.window} + 1; lower --window")
        if valid is not None:
            self.valid_values = self._check(valid, "the validation series")
            context = self._context()
            if len(self.valid_values) < 2 and (context is None or len(context) == 0):
                raise DataError("the validation series needs at least 2 steps (one to forecast from, one to score)")

    def train_batches(self, epoch: int) -> list[dict[str, Tensor]]:
        spans = self.train_values.unfold(0, self.data.window + 1, 1).transpose(1, 2)  # (N, W + 1, S)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(spans), generator=g)
        return [{"series": spans[order[i:i + self.batch_size]]} for i in range(0, len(spans), self.batch_size)]

    def count_unit(self, model: nn.Module) -> str:
        return "windows"

    def loss(self, model: nn.Module, batch: dict, carry: Any, ctx: StepContext):
        series = batch["series"]  # (B, W + 1, S)
        return model.loss(series) * series.shape[0], series.shape[0], None

    def _scored_series(self) -> tuple[Tensor, int]:
        """The validation series after its context (the training series' end, if any), (T_c + T_v, S), and the
        index in it of the first step scored (the first validation step, or the second without a context)."""
        context = self._context()
        context = self.valid_values[:0] if context is None else context
        return torch.cat([context, self.valid_values]), len(context) if len(context) else 1

    def _one_step(self, model: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
        """(predictions, targets, last values) for every validation step, each (N, S)."""
        full, first = self._scored_series()
        pred = model(full.unsqueeze(0).to(device_of(model)))[0].cpu()  # (T - 1, S): pred[t] forecasts full[t + 1]
        return pred[first - 1:], full[first:], full[first - 1:-1]

    def _direct(self, model: nn.Module) -> tuple[Tensor, Tensor, Tensor] | None:
        """With a direct head of K steps: (forecasts, targets, last values), each (N, K, S), for every window of
        K validation steps — each forecast from the history just before its window, the naive one repeating
        the value there. None without a head or where the series holds no whole window."""
        K = model.config.horizon
        full, first = self._scored_series()
        if not K or len(full) - first < K:
            return None
        pred = model.direct_forecasts(full.unsqueeze(0).to(device_of(model)))[0].cpu()  # (T − K, K, S)
        target = full.unfold(0, K, 1)[1:].transpose(1, 2)  # (T − K, K, S): window j is full[j + 1 … j + K]
        last = full[:-K].unsqueeze(1).expand_as(target)
        return pred[first - 1:], target[first - 1:], last[first - 1:]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        pred, target, last = self._one_step(model)
        out = M.forecast_metrics(pred, target, last)  # the naive last-value baseline included
        direct = self._direct(model)
        if direct is not None:  # the direct head's K-step windows, against the last value repeated K times
            out.update({f"direct_{k}": v for k, v in M.forecast_metrics(*direct).items()})
        loss = self._validation_loss(model)
        if loss is not None:
            out["loss"] = loss
        return out

    def _validation_loss(self, model: nn.Module) -> float | None:
        """The training objective (``model.loss``: standardised MSE, plus the direct head's) on windows of
        ``window`` + 1 steps cut from the validation series as training cuts them from the training series
        — so that a run's training and validation losses share their units (MAE and RMSE are in the
        data's). A validation series shorter than a window is scored as one span, after as much of the
        training series' end as completes it; None where even that is too short (``evaluate`` on a few
        steps without the training data)."""
        W, v = self.data.window, self.valid_values
        if len(v) >= W + 1:
            spans = v.unfold(0, W + 1, 1).transpose(1, 2)  # (N, W + 1, S)
        else:
            context = self._context()
            spans = torch.cat([v[:0] if context is None else context, v])[-(W + 1):].unsqueeze(0)
        if spans.shape[1] < max(2, model.config.horizon + 1):  # too short for the objective (no training context)
            return None
        total, dev = 0.0, device_of(model)
        with torch.no_grad():
            for i in range(0, len(spans), self.batch_size):
                batch = spans[i:i + self.batch_size].to(dev)
                total += float(model.loss(batch)) * len(batch)
        return total / len(spans)

    def predict(self, model: nn.Module, lines: Sequence[str], steps: int = 1,
                method: Literal["autoregressive", "direct"] = "autoregressive") -> list[str]:
        """The forecast of the next ``steps`` values after each line's history, in the input's format: one
        series' values apart by spaces (one value for one step, as before), several series' steps apart by
        ';' and their values by ','."""
        out = []
        S = len(self.columns)
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                out.append("")
                continue
            history = line.split(";") if S > 1 else [line]
            try:
                rows = [[float(v) for v in s.replace(",", " ").split()] for s in history]
                values = torch.tensor(rows if S > 1 else [[v] for v in rows[0]], dtype=torch.float32)
            except ValueError:
                raise DataError(f"line {n}: expected numbers, got {line.strip()[:40]!r}") from None
            if values.dim() != 2 or values.shape[1] != S or not torch.isfinite(values).all():
                raise DataError(f"line {n}: expected finite values of {S} series, got {line.strip()[:40]!r}")
            ahead = model.forecast(values.unsqueeze(0).to(device_of(model)), steps, method=method)[0]  # (steps, S)
            rows = [",".join(f"{v:.6g}" for v in row) for row in ahead.tolist()]
            out.append(";".join(rows) if S > 1 else " ".join(rows))
        return out
