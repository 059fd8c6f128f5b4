"""Time series: ``Forecaster`` predicts the next values of S series from their past (and, optionally,
from E exogenous covariates known ahead of time: a calendar, a planned input, a weather forecast).

Scaling lives in the model: ``fit_scaler`` stores each channel's mean and standard deviation as buffers
(saved in ``state_dict``), inputs are standardised on the way in and forecasts restored on the way out,
so a checkpoint forecasts in the user's units with nothing else to carry.

At step t the recurrent stack reads z_t = (y_t − μ)/σ and the covariates of the step it predicts,
e_{t+1} (standardised too); from its state h_t:

    one-step head:  ẑ_{t+1} = W h_t + b                                   (S values)
    direct head:    [ẑ_{t+1}, …, ẑ_{t+K}] = W_K h_t + b_K                   (K·S values; ``horizon`` = K)

Training (``loss``) is one-step-ahead on the sequence shifted by one — inputs y_0 … y_{T−2}, targets
y_1 … y_{T−1} — plus, with a direct head, every window of the next K values that fits in the sequence.
Forecasting (``forecast``) runs the history once, then either rolls out autoregressively (each
prediction fed back as the next input; any number of steps) or reads all K steps from the direct head
at once (steps ≤ K). The direct head sees the covariates of the first forecast step only (those of
later steps are not inputs to it); the rollout reads each step's own.

Shapes: series (B, T, S); exogenous (B, T, E) aligned with the series — for ``forecast``, (B, T + steps, E):
the history's covariates followed by those of the steps to forecast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine.step import StepKernel, current_kernel
from .common import check_features, check_not_empty, make_recurrent
from .config import (Cell, ConfiguredModel, Engine, RecurrentOptions, check_dropout, check_positive, check_types,
                     inference)


@dataclass(kw_only=True)
class ForecasterConfig(RecurrentOptions):
    """Everything needed to rebuild a ``Forecaster``.

    num_series: target channels S (1). num_exogenous: covariate channels E known ahead (0: none).
    hidden_size: H (64). num_layers: stacked layers (1). cell: lstm | gru | rnn_tanh | rnn_relu ("lstm").
    horizon: K > 0 adds a direct multi-output head forecasting the next K steps at once (0: none).
    dropout: between layers and before the heads (0.0).
    engine: the recurrent engine, "auto" | "reference" | "fused" | "native" ("auto").
    The recurrent layers' variant options (``RecurrentOptions``) are fields too.
    """

    num_series: int = 1
    num_exogenous: int = 0
    hidden_size: int = 64
    num_layers: int = 1
    cell: Cell = "lstm"
    horizon: int = 0
    dropout: float = 0.0
    engine: Engine = "auto"

    def __post_init__(self) -> None:
        check_types(self)
        self.check_recurrent_options(self.cell)
        check_positive(self, "num_series", "hidden_size", "num_layers")
        for name in ("num_exogenous", "horizon"):
            if getattr(self, name) < 0:
                raise ValueError(f"ForecasterConfig: {name} must be >= 0, got {getattr(self, name)}")
        check_dropout(self)


class Forecaster(ConfiguredModel):
    """Recurrent forecaster; keyword arguments are the fields of ``ForecasterConfig``.

    ``fit_scaler(series, exogenous=None)`` → self, after storing per-channel mean and std (buffers).
    ``forward(series, exogenous=None)`` → one-step predictions (B, T − 1, S) of series[:, 1:].
    ``loss(series, exogenous=None)`` → mean squared error in standardised units (one-step, plus direct).
    ``forecast(series, steps, exogenous=None, method="autoregressive" | "direct")`` → (B, steps, S).
    All values going in and coming out are in the series' own units.
    """

    config_class = ForecasterConfig

    def build(self, c: ForecasterConfig) -> None:
        S, E = c.num_series, c.num_exogenous
        self.rnn = make_recurrent(c.cell, S + E, c.hidden_size, c.num_layers, c.dropout, engine=c.engine,
                                  options=c.recurrent_options())
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size, S)
        self.direct_head = nn.Linear(c.hidden_size, c.horizon * S) if c.horizon else None
        # Standardisation, identity until fit_scaler; buffers so they move with .to() and state_dict.
        self.register_buffer("series_mean", torch.zeros(S))
        self.register_buffer("series_std", torch.ones(S))
        self.register_buffer("exogenous_mean", torch.zeros(E))
        self.register_buffer("exogenous_std", torch.ones(E))
        self._kernel: StepKernel | None = None  # packed weights for the rollout; not state

    # -- inputs and scaling -----------------------------------------------------------------------
    def _series(self, owner: str, series) -> Tensor:
        """Checked series (B, T, S), T ≥ 1, in the model's dtype and device (not yet standardised)."""
        c = self._config
        y = check_features(owner, "series", series, 3, "(B, T, num_series)", c.num_series, self.head.weight.dtype)
        if y.shape[1] == 0:
            raise ValueError(f"{owner}: series has no time steps (shape {tuple(y.shape)})")
        return y.to(self.series_mean.device)

    def _exogenous(self, owner: str, exogenous, batch: int, steps: int, extra_steps: int = 0) -> Tensor | None:
        """Checked covariates (B, steps + extra_steps, E), or None for a model without them."""
        E = self._config.num_exogenous
        if E == 0:
            if exogenous is not None:
                raise ValueError(f"{owner}: exogenous given, but this forecaster was built with num_exogenous=0")
            return None
        expected = (batch, steps + extra_steps, E)
        if exogenous is None:
            raise ValueError(f"{owner}: exogenous {expected} is required: this forecaster was built with "
                             f"num_exogenous={E}")
        e = check_features(owner, "exogenous", exogenous, 3, "(B, T, num_exogenous)", E, self.head.weight.dtype)
        if tuple(e.shape) != expected:
            raise ValueError(f"{owner}: exogenous must have shape {expected} (the series' {steps} steps"
                             f"{f' + {extra_steps} to forecast' if extra_steps else ''}), got {tuple(e.shape)}")
        return e.to(self.series_mean.device)

    def _inputs(self, owner: str, series, exogenous, extra_steps: int = 0) -> tuple[Tensor, Tensor | None]:
        """Standardised series (B, T, S) and covariates (B, T + extra_steps, E) or None."""
        y = self._series(owner, series)
        e = self._exogenous(owner, exogenous, y.shape[0], y.shape[1], extra_steps)
        z = (y - self.series_mean) / self.series_std
        return z, None if e is None else (e - self.exogenous_mean) / self.exogenous_std

    @staticmethod
    def _step_inputs(z: Tensor, e: Tensor | None) -> Tensor:
        """[z_t, e_{t+1}] for every step of z: (B, T, S + E); e has at least one step more than z."""
        return z if e is None else torch.cat([z, e[:, 1 : z.shape[1] + 1]], dim=2)

    def _unscale(self, z: Tensor) -> Tensor:
        return z * self.series_std + self.series_mean

    @torch.no_grad()
    def fit_scaler(self, series: Tensor, exogenous: Tensor | None = None) -> "Forecaster":
        """Store the mean and standard deviation of every channel over batch and time (a constant
        channel keeps std 1, so it is only shifted). Call once, on the training data, before training."""
        owner = "Forecaster.fit_scaler"
        y = self._series(owner, series)
        e = self._exogenous(owner, exogenous, y.shape[0], y.shape[1])
        pairs = [(y, self.series_mean, self.series_std)]
        if e is not None:
            pairs.append((e, self.exogenous_mean, self.exogenous_std))
        for x, mean, std in pairs:
            flat = x.reshape(-1, x.shape[-1])
            if flat.shape[0] < 2:
                raise ValueError(f"{owner}: need at least 2 values per channel to estimate a scale, got "
                                 f"shape {tuple(x.shape)}")
            s = flat.std(dim=0)
            mean.copy_(flat.mean(dim=0))
            std.copy_(torch.where(s > 0, s, torch.ones_like(s)))
        return self

    # -- training ---------------------------------------------------------------------------------
    def _run(self, owner: str, series, exogenous) -> tuple[Tensor, Tensor]:
        """Standardised series z (B, T, S) and the top layer's outputs o (B, T − 1, H) after reading
        steps 0 … T − 2 (each o_t predicts step t + 1)."""
        z, e = self._inputs(owner, series, exogenous)
        if z.shape[1] < 2:
            raise ValueError(f"{owner}: series needs at least 2 time steps (an input and a target), got "
                             f"shape {tuple(series.shape)}")
        o, _ = self.rnn(self._step_inputs(z[:, :-1], e))
        return z, self.drop(o)

    def forward(self, series: Tensor, exogenous: Tensor | None = None) -> Tensor:
        """One-step-ahead predictions (B, T − 1, S) of series[:, 1:], in the series' units."""
        _, o = self._run("Forecaster", series, exogenous)
        return self._unscale(self.head(o))

    def loss(self, series: Tensor, exogenous: Tensor | None = None) -> Tensor:
        """MSE of the one-step predictions in standardised units; with a direct head, plus the MSE of
        its K-step windows (those that end inside the series: T ≥ K + 1 is needed)."""
        check_not_empty("Forecaster.loss", "series", series)
        z, o = self._run("Forecaster.loss", series, exogenous)
        loss = F.mse_loss(self.head(o), z[:, 1:])
        K = self._config.horizon
        if K:
            B, T, S = z.shape
            if T < K + 1:
                raise ValueError(f"Forecaster.loss: with horizon={K}, series needs at least {K + 1} time steps, "
                                 f"got {T}")
            pred = self.direct_head(o[:, : T - K]).view(B, T - K, K, S)  # windows starting at 1 … T − K
            target = z.unfold(1, K, 1)[:, 1:].transpose(2, 3)  # (B, T − K, K, S)
            loss = loss + F.mse_loss(pred, target)
        return loss

    # -- forecasting ------------------------------------------------------------------------------
    @inference
    def direct_forecasts(self, series: Tensor, exogenous: Tensor | None = None) -> Tensor:
        """The direct head's forecasts from every point of ``series`` (B, T, S) whose K next steps lie in it:
        (B, T − K, K, S) in the series' units, window j forecasting ``series[:, j + 1 : j + K + 1]`` from the
        history up to step j (the windows the loss scores); in eval mode."""
        owner = "Forecaster.direct_forecasts"
        K = self._config.horizon
        if not K:
            raise ValueError(f"{owner}: the model has no direct head (build it with horizon > 0)")
        _, o = self._run(owner, series, exogenous)  # o (B, T − 1, H): o_j has read steps 0 … j
        B, T = o.shape[0], o.shape[1] + 1
        if T < K + 1:
            raise ValueError(f"{owner}: with horizon={K}, series needs at least {K + 1} time steps, got {T}")
        return self._unscale(self.direct_head(o[:, : T - K]).view(B, T - K, K, -1))

    @inference
    def forecast(self, series: Tensor, steps: int, exogenous: Tensor | None = None,
                 method: Literal["autoregressive", "direct"] = "autoregressive") -> Tensor:
        """The next ``steps`` values (B, steps, S) after the history ``series`` (B, T, S); in eval mode.

        ``autoregressive``: each prediction is fed back as the next input (any ``steps``); ``direct``:
        the direct head's K values at once (needs ``horizon`` = K ≥ steps). With covariates, ``exogenous``
        is (B, T + steps, E): the history's, then those of the forecast steps."""
        owner = "Forecaster.forecast"
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{owner}: steps must be an int >= 1, got {steps!r}")
        if method not in ("autoregressive", "direct"):
            raise ValueError(f"{owner}: method must be 'autoregressive' or 'direct', got {method!r}")
        K = self._config.horizon
        if method == "direct" and steps > K:
            raise ValueError(f"{owner}: the direct head forecasts at most horizon={K} steps, got steps={steps}"
                             + ("" if K else " (build the model with horizon > 0 for a direct head)"))
        z, e = self._inputs(owner, series, exogenous, extra_steps=steps)
        B, T, S = z.shape
        o, state = self.rnn(self._step_inputs(z, e))  # reads z_0 … z_{T−1}; o_{T−1} predicts step T
        h = o[:, -1]  # (B, H)
        if method == "direct":
            return self._unscale(self.direct_head(h).view(B, K, S)[:, :steps])
        # Roll out one step at a time with the packed single-step kernel: torch's layout (L, B, H) state.
        self._kernel = kernel = current_kernel(self._kernel, self.rnn)
        preds = [self.head(h)]  # ẑ_T
        for k in range(1, steps):
            x = preds[-1] if e is None else torch.cat([preds[-1], e[:, T + k]], dim=1)  # [ẑ_{T+k−1}, e_{T+k}]
            h, state = kernel(x, state)
            preds.append(self.head(h))
        return self._unscale(torch.stack(preds, dim=1))
