"""The training loop: optimiser, schedule, clipping, truncated BPTT, evaluation, early stopping,
checkpoints, exact resume, Ctrl-C, time budget, progress bar, metrics log — for any ``TrainTask``.

A task (``rnnkit.train.tasks`` has one per application) supplies the data and the loss::

    task.train_batches(epoch) -> Sequence[batch]      global batches, the same on every call/rank
    task.loss(model, batch, carry, ctx) -> (summed loss, tokens, carry)
    task.evaluate(model) -> {metric: value}           includes task.main_metric
    task.main_metric, task.maximize

One optimizer step per batch. The loss is *summed* over the batch's tokens (examples, characters,
tags, …) and divided here by the token count — of the global batch under DDP — so the gradient is
that of the mean loss per token however the batch is split. ``carry`` is the recurrent state a
language model hands from one chunk of its stream to the next (truncated BPTT): the trainer detaches
it after every step so gradients stop at the chunk boundary while the state flows on, resets it at
each epoch, and saves it in the checkpoint so ``--resume`` continues exactly.

Exactness of resume: data order is a function of (seed, epoch), the schedules are functions of the
step, evaluation runs under a forked RNG, and the checkpoint holds the optimizer, RNG, step, epoch,
position in the epoch and the carried state. Training k steps, resuming and training N − k more gives
bit-identical weights to training N steps in one go (tests/train/test_trainer.py).

Gradient health: every step's global gradient norm (the one clipping computes) goes to a
``rnnkit.diagnostics.GradientMonitor``, which warns when gradients explode; every ``probe_every``
steps it also probes ``model.rnn`` for vanishing gradients. A warning is a ``{"split": "warning"}``
record in metrics.jsonl and a line above the progress bar (a ``GradientWarning`` without a bar).
The probe draws no random numbers, so resuming stays exact.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..clip import clip_grad_norm, clip_grad_value
from ..diagnostics.monitor import GradientEvent, GradientMonitor, GradientWarning
from ..diagnostics.stepping import layer_mode
from . import checkpoint as ckpt
from . import distributed as dist_
from .config import RESUMABLE_CHANGES, TrainConfig
from .records import MetricsLog, plot_loss
from .schedules import learning_rate


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a refused resume, …); the message is one line."""


class ConfigMismatch(TrainingError):
    """``--resume`` with a model, training or data config that differs from the checkpoint's."""


@dataclass
class StepContext:
    """What a task's ``loss`` may want to know about the current step."""

    step: int   # optimizer steps done so far (the teacher-forcing schedule of Seq2Seq reads it)
    epoch: int


class TrainTask:
    """Base class of tasks: the defaults for sharding a batch across DDP ranks and for the carried
    state's batch dimension. See the module docstring for what a subclass must provide."""

    main_metric: str = "loss"
    maximize: bool = False
    #: Dimension of the batch in every carried state tensor ((num_layers, B, H) for RNN states).
    carry_batch_dim: int = 1

    def count_unit(self, model: nn.Module) -> str:
        """What the count ``loss`` returns counts — the loss is averaged over them, and the rate of training
        (``tokens``, ``tokens_per_s``) is of them: "tokens" unless a task says otherwise."""
        return "tokens"

    def train_batches(self, epoch: int) -> Sequence[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any, carry: Any, ctx: StepContext) -> tuple[Tensor, int, Any]:
        raise NotImplementedError  # pragma: no cover - abstract

    def evaluate(self, model: nn.Module) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def rows_in(batch: Any) -> int:
        for v in batch.values():
            if isinstance(v, Tensor) and v.dim() > 0:
                return v.shape[0]
            if isinstance(v, (list, tuple)):
                return len(v)
        raise ValueError("TrainTask: a batch needs at least one tensor or list with the batch first")

    def shard(self, batch: dict, rank: int, world: int) -> dict:
        """Rank ``rank``'s contiguous slice of every entry whose leading size is the batch size (the last
        ranks take the extra rows: ``distributed.rank_slice``)."""
        n = self.rows_in(batch)
        lo, hi = dist_.rank_slice(n, rank, world)
        return {k: v[lo:hi] if isinstance(v, (Tensor, list, tuple)) and len(v) == n and
                (not isinstance(v, Tensor) or v.dim() > 0) else v for k, v in batch.items()}


@dataclass
class TrainResult:
    step: int
    epoch: int
    stop_reason: str               # max_steps | epochs | time_budget | early_stopping | interrupted
    metrics: dict[str, float]      # the last evaluation (empty when interrupted)
    best: dict[str, Any]           # {"metric", "value", "step"}
    elapsed: float                 # seconds of training (excluding evaluation), across resumes
    tokens: int                    # what the loss was averaged over, counted: tokens, or ``unit``
    epochs_done: float = 0.0       # passes over the training data, a fraction for one cut short
    unit: str = "tokens"           # what ``tokens`` counts (``TrainTask.count_unit``)
    checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    metrics_log: Path | None = None
    loss_plot: Path | None = None
    log: list[dict] = field(default_factory=list)


# --- helpers --------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's generators with ``seed``, an int >= 0 (Python's random treats k
    and −k alike) below 2**63."""
    import random

    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed_everything: seed must be an int in [0, 2**63), got {seed!r}")

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _map(fn: Callable[[Tensor], Tensor], obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map(fn, v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple takes its fields one by one
        return type(obj)(*(_map(fn, v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(fn, v) for v in obj)
    return obj


def _check_task(task: Any) -> None:
    """A task given to the Trainer has what the loop calls (module docstring), said before any training
    (a missing ``evaluate`` surfaced as a bare NotImplementedError after the last step)."""
    missing = [name for name in ("train_batches", "loss", "evaluate")
               if not callable(getattr(task, name, None)) or
               getattr(type(task), name, None) is getattr(TrainTask, name)]
    if missing:
        raise TypeError(f"Trainer: the task {type(task).__name__} has no {', '.join(missing)} (a task provides "
                        f"train_batches(epoch), loss(model, batch, carry, ctx) and evaluate(model); see "
                        f"rnnkit.train.trainer's docstring)")
    if not isinstance(getattr(task, "main_metric", None), str):
        raise TypeError(f"Trainer: the task {type(task).__name__} needs main_metric, the name of the metric in "
                        f"evaluate()'s dict that selects the best checkpoint")


def _flatten(obj: Any, prefix: str, out: dict[str, Tensor]) -> Any:
    """A JSON spec of a nest of tensors in tuples, lists, namedtuples and dicts with string keys (the carried
    state's shapes ``_map`` walks); the tensors go into ``out`` by name."""
    if obj is None:
        return None
    if isinstance(obj, Tensor):
        out[prefix] = obj.detach()
        return {"tensor": prefix}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # (rebuilt as a namedtuple of the same name and fields)
        return {"seq": [_flatten(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)],
                "namedtuple": [type(obj).__name__, list(obj._fields)]}
    if isinstance(obj, (tuple, list)):
        return {"seq": [_flatten(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)],
                "kind": "list" if isinstance(obj, list) else "tuple"}
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {"dict": {k: _flatten(v, f"{prefix}.{k}", out) for k, v in obj.items()}}
    raise TypeError(f"carried state must be tensors in tuples, lists, namedtuples or dicts with str keys, got "
                    f"{type(obj).__name__}")


def _unflatten(spec: Any, tensors: dict[str, Tensor]) -> Any:
    if spec is None:
        return None
    if "tensor" in spec:
        return tensors[spec["tensor"]]
    if "dict" in spec:
        return {k: _unflatten(v, tensors) for k, v in spec["dict"].items()}
    items = [_unflatten(s, tensors) for s in spec["seq"]]
    if "namedtuple" in spec:
        name, fields = spec["namedtuple"]
        return collections.namedtuple(name, fields)(*items)
    return items if spec.get("kind") == "list" else tuple(items)  # (older checkpoints: no kind, tuples)


class _StopSignal:
    """SIGINT/SIGTERM set a flag the loop checks after each step, so Ctrl-C never lands in the middle
    of an optimizer update; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> "_StopSignal":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _ProbeInput:
    """Context manager: while active, keeps the first input (detached) that ``layer`` is called with, and
    its ``lengths=``; ``layer`` None: does nothing. Only a 3-D tensor (a padded batch) is kept; packed input
    is not."""

    def __init__(self, layer: nn.Module | None) -> None:
        self.layer, self.x, self.lengths, self._hook = layer, None, None, None

    def _keep(self, module, args, kwargs) -> None:
        if self.x is None and args and isinstance(args[0], Tensor) and args[0].dim() == 3:
            self.x = args[0].detach()
            self.lengths = kwargs.get("lengths")

    def __enter__(self) -> "_ProbeInput":
        if self.layer is not None:
            self._hook = self.layer.register_forward_pre_hook(self._keep, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()


class _LossModule(nn.Module):
    """Wraps model + task loss in one forward, so DDP sees the forward it must hook."""

    def __init__(self, model: nn.Module, task: TrainTask) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch, carry, ctx):
        return self.task.loss(self.model, batch, carry, ctx)


# --- the trainer ----------------------------------------------------------------------------

def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS keeps one (``taskset``, a
    container's cpuset), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _source_changes(saved: Any, now: Any) -> list[str]:
    """The data files that differ from those the checkpoint's run read (``tasks.data_sources``: each file's size and
    SHA-256), in words; none where either side did not record them (a checkpoint from before they were, or a
    Trainer given no ``sources``). Another order of the same examples is other data: the run would not continue
    as it began."""
    if not isinstance(saved, dict) or not isinstance(now, dict):
        return []
    out = []
    for role, flag in (("data", "--data"), ("valid", "--valid")):
        before, after = saved.get(role), now.get(role)
        if not (isinstance(before, list) and isinstance(after, list)):
            continue
        if len(before) != len(after):
            out.append(f"the {flag} files ({len(before)} → {len(after)})")
        elif any(a != b and not _unverified(a) and not _unverified(b) for a, b in zip(before, after)):
            out.append(f"the {flag} files (their contents differ from those the run read)")
    return out


def _unverified(source: Any) -> bool:
    """A data source that could not be fingerprinted (a pipe, read once): it matches any."""
    return isinstance(source, dict) and "unverified" in source


def _same_vocab(saved: Any, now: Any) -> bool:
    """The checkpoint's vocabulary state equals the run's; a key the checkpoint does not have, at any depth (a
    version of rnnkit that did not save it yet: a tokenizer's ``nfc`` option, say), is left out of the
    comparison, so older runs still resume."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return saved.keys() <= now.keys() and all(_same_vocab(v, now[k]) for k, v in saved.items())
    return saved == now


def _check_optimizer_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Each per-parameter state tensor (Adam's moments, SGD's momentum) has its parameter's shape —
    torch accepts any shape when loading and fails only at the next step."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(f"optimizer state {key!r} has shape {tuple(value.shape)}, its parameter "
                                     f"{tuple(p.shape)}")


class Trainer:
    """Trains ``model`` on ``task`` with ``config``; writes into ``out_dir`` (None: nothing written).

    ``model_type``/``model_config``/``vocab``/``task_info`` are stored in checkpoints so that
    ``rnnkit.models`` can rebuild the model and the CLI its tokenizers; ``on_step(trainer)`` is called after every optimizer step (tests use it).
    """

    def __init__(self, model: nn.Module, task: TrainTask, config: TrainConfig, *, out_dir=None,
                 model_type: str = "model", model_config: dict | None = None, vocab: dict | None = None,
                 task_info: dict | None = None,
                 progress: bool = True, device: str = "auto", on_step: Callable[["Trainer"], None] | None = None,
                 description: str = "train") -> None:
        _check_task(task)
        self.dist, self.device = dist_.init(device)
        self.task, self.config = task, config
        self.model = model.to(self.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model_type, self.model_config, self.vocab = model_type, model_config or {}, vocab
        self.task_info = task_info
        self.progress, self.on_step, self.description = progress and self.dist.is_main, on_step, description
        self.loss_module: nn.Module = _LossModule(self.model, task)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DDP(self.loss_module, device_ids=ids)
        self.optimizer = self._make_optimizer()
        # loop state (all of it goes into the checkpoint)
        self.step = self.epoch = self.position = self.tokens = 0
        self.elapsed = 0.0
        self.carry: Any = None
        self.best: dict[str, Any] = {"metric": task.main_metric, "value": None, "step": None}
        self.patience_best: float | None = None  # the best scheduled evaluation's value, which patience counts from
        self.bad_evals = 0
        self.last_metrics: dict[str, float] = {}
        self.last_good: Path | None = None
        self._batches: Sequence[Any] | None = None
        self._log: MetricsLog | None = None
        self._bar = None
        self._last_eval_step: int | None = None
        self._saved_step: int | None = None  # the step of the latest resumable snapshot this run wrote or resumed
        self.monitor = GradientMonitor(config.monitor_config(), on_event=self._gradient_event)
        self._probe_layer = self._recurrent_layer() if config.probe_every else None

    # -- construction --

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay)

    def _recurrent_layer(self) -> nn.Module | None:
        """``model.rnn`` when it is an RNN/LSTM/GRU layer (what the vanishing probe measures)."""
        layer = getattr(self.model, "rnn", None)
        try:
            layer_mode(layer)
        except TypeError:
            warnings.warn(f"probe_every={self.config.probe_every}: {type(self.model).__name__} has no recurrent "
                          f"layer at .rnn, so gradients are not probed for vanishing", GradientWarning, stacklevel=3)
            return None
        return layer

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoint"

    @property
    def best_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "best"

    # -- schedule --

    def progress_fraction(self) -> float:
        c, fracs = self.config, []
        if c.max_steps:
            fracs.append(self.step / c.max_steps)
        if c.time_budget:
            fracs.append(self.elapsed / c.time_budget)
        if c.epochs:
            n = max(len(self._batches), 1) if self._batches is not None else 1
            fracs.append((self.epoch + self.position / n) / c.epochs)
        if not fracs:  # one epoch by default
            n = max(len(self._batches), 1) if self._batches is not None else 1
            fracs.append(self.epoch + self.position / n)
        return max(fracs)

    def current_lr(self) -> float:
        c = self.config
        return learning_rate(c.lr, self.step, self.progress_fraction(), schedule=c.schedule,
                             warmup_steps=c.warmup_steps, min_lr_ratio=c.min_lr_ratio)

    # -- state for checkpoints --

    def _gathered_carry(self) -> Any:
        if not self.dist.enabled or self.carry is None:
            return self.carry
        dim = self.task.carry_batch_dim
        return _map(lambda t: dist_.all_gather_cat(t, self.dist, dim), self.carry)

    def _state(self) -> tuple[dict, dict[str, Tensor]]:
        opt_meta, tensors = ckpt.optimizer_state(self.optimizer)
        rng_meta, rng_tensors = ckpt.rng_state()
        tensors.update(rng_tensors)
        if self.dist.enabled:  # each rank's own torch generator: ranks holding different numbers of rows
            # draw different numbers of dropout masks, so rank 0's state is not theirs
            tensors["rng.torch_per_rank"] = dist_.all_gather_cat(torch.get_rng_state().unsqueeze(0), self.dist, 0)
            if self.device.type == "cuda":  # and its own device's (dropout masks on a GPU come from there)
                tensors["rng.cuda_per_rank"] = dist_.all_gather_cat(
                    torch.cuda.get_rng_state(self.device).unsqueeze(0), self.dist, 0)
        carry_spec = _flatten(self._gathered_carry(), "carry", tensors)
        state = {
            "step": self.step, "epoch": self.epoch, "position": self.position, "tokens": self.tokens,
            "elapsed": self.elapsed, "train_config": self.config.to_dict(), "optimizer": opt_meta,
            "rng": rng_meta, "carry": carry_spec, "best": self.best, "patience_best": self.patience_best,
            "bad_evals": self.bad_evals,
            "world_size": self.dist.world_size, "last_metrics": self.last_metrics,
            "explode_streak": self.monitor.explode_streak,  # consecutive steps above explode_threshold so far
        }
        return state, tensors

    def save(self, directory: Path | None = None, *, trainer_state: bool = True) -> Path | None:
        """Saves a checkpoint (rank 0 only; every rank must call it under DDP because the carried
        state is gathered). Returns the snapshot path."""
        directory = directory or self.checkpoint_dir
        if directory is None:  # (the same on every rank: none gathers the carried state)
            return None
        state, tensors = self._state() if trainer_state else (None, None)
        if trainer_state and directory == self.checkpoint_dir:
            self._saved_step = self.step
        if not self.dist.is_main:  # rank 0 writes it; every rank names it if training diverges later
            if trainer_state:
                self.last_good = directory
            return None
        path = ckpt.save_checkpoint(directory, model_type=self.model_type, config=self.model_config,
                                    weights=self.model.state_dict(), vocab=self.vocab, trainer=state,
                                    trainer_tensors=tensors, task=self.task_info, step=self.step)
        if trainer_state:
            self.last_good = directory
        return path

    def resume(self, path) -> None:
        """Loads model, optimizer, RNG and loop state from a checkpoint written by this trainer.
        Refuses a checkpoint whose model or training config differs from this run's."""
        c = ckpt.load_checkpoint(path, expected_type=self.model_type)
        if not c.trainer:
            raise TrainingError(f"--resume: {c.path} has no trainer state (saved for inference only)")
        # (a field added since the checkpoint was written is absent from it, which means the field's default then)
        changes = _config_changes("model", {**_field_defaults(getattr(self.model, "config_class", None)), **c.config},
                                  self.model_config)
        old_train = {**_field_defaults(TrainConfig), **c.trainer.get("train_config", {})}
        changes += _config_changes("train", {k: v for k, v in old_train.items() if k not in RESUMABLE_CHANGES},
                                   {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES})
        if self.config.schedule != "constant":  # the decay follows the fraction of the run done
            length = ("max_steps", "epochs", "time_budget")
            changes += [f"{c_} (the {self.config.schedule} schedule decays over the run's length)" for c_ in
                        _config_changes("train", {k: old_train.get(k) for k in length},
                                        {k: getattr(self.config, k) for k in length})]
        if c.task != self.task_info:
            changes += _config_changes("data", (c.task or {}).get("data", {}), (self.task_info or {}).get("data", {}))
            if (c.task or {}).get("name") != (self.task_info or {}).get("name"):
                changes.append(f"task {(c.task or {}).get('name')!r} → {(self.task_info or {}).get('name')!r}")
            changes += _source_changes((c.task or {}).get("sources"), (self.task_info or {}).get("sources"))
        if not _same_vocab(c.vocab, self.vocab):
            changes.append("the vocabulary (the data changed)")
        if changes:
            raise ConfigMismatch(f"--resume: config changed since {c.path}: {'; '.join(changes[:4])}"
                                f"{' …' if len(changes) > 4 else ''} (start a new run with another --out)")
        ckpt.load_weights(self.model, c)  # a mismatch names the weight and both shapes
        t = c.trainer
        try:  # a trainer state rnnkit did not write (edited, damaged) is named, not a KeyError deep inside
            for key in ("step", "epoch", "position", "tokens", "bad_evals"):
                if isinstance(t[key], bool) or not isinstance(t[key], int) or t[key] < 0:
                    raise ValueError(f"{key!r} must be an int >= 0, got {t[key]!r}")
            if isinstance(t["elapsed"], bool) or not isinstance(t["elapsed"], (int, float)):
                raise ValueError(f"'elapsed' must be a number, got {t['elapsed']!r}")
            best = t["best"]
            if not (isinstance(best, dict) and _number_or_none(best.get("value"))):
                raise ValueError(f"'best' must be an object whose value is a number or null, got {best!r}")
            if not _number_or_none(t.get("patience_best")):
                raise ValueError(f"'patience_best' must be a number or null, got {t.get('patience_best')!r}")
            ckpt.load_optimizer_state(self.optimizer, t["optimizer"], c.trainer_tensors)
            _check_optimizer_shapes(self.optimizer)
            ckpt.set_rng_state(t["rng"], c.trainer_tensors)
            per_rank = c.trainer_tensors.get("rng.torch_per_rank")
            if self.dist.enabled and per_rank is not None and len(per_rank) == self.dist.world_size:
                torch.set_rng_state(per_rank[self.dist.rank].clone())
            per_rank = c.trainer_tensors.get("rng.cuda_per_rank")
            if self.dist.enabled and self.device.type == "cuda" and per_rank is not None and \
                    len(per_rank) == self.dist.world_size:
                torch.cuda.set_rng_state(per_rank[self.dist.rank].clone(), self.device)
            self.step, self.epoch, self.position = t["step"], t["epoch"], t["position"]
            self.tokens, self.elapsed = t["tokens"], t["elapsed"]
            self.best, self.bad_evals, self.last_metrics = t["best"], t["bad_evals"], t.get("last_metrics", {})
            self.patience_best = t.get("patience_best", self.best.get("value"))  # (older checkpoints: one best)
            self._last_eval_step = self.last_metrics.get("_step")
            streak = t.get("explode_streak", 0)  # (absent from checkpoints written before it was kept)
            if isinstance(streak, bool) or not isinstance(streak, int) or streak < 0:
                raise ValueError(f"'explode_streak' must be an int >= 0, got {streak!r}")
            self.monitor.explode_streak = streak
            carry = _unflatten(t["carry"], c.trainer_tensors)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e).strip().splitlines()[0]
            raise ckpt.CheckpointError(f"checkpoint {c.path}: its training state (trainer.json, trainer.safetensors) "
                                       f"is damaged: {what}") from None
        if carry is not None and self.dist.enabled:  # this rank's rows, as ``shard`` cuts a batch
            dim, r, w = self.task.carry_batch_dim, self.dist.rank, self.dist.world_size

            def mine(x: Tensor) -> Tensor:
                lo, hi = dist_.rank_slice(x.shape[dim], r, w)
                return x.narrow(dim, lo, hi - lo)

            carry = _map(mine, carry)
        self.carry = _map(lambda x: x.to(self.device), carry)
        self.last_good = Path(path)
        own = self.checkpoint_dir is not None and Path(c.path).resolve().parent == self.checkpoint_dir.resolve()
        self._saved_step = self.step if own else None  # (another folder's snapshot: this run's folder needs one)

    def tune_threads(self, candidates: Sequence[int] | None = None) -> int:
        """Times a forward and backward pass of the first training batch with each thread count and
        keeps the fastest. On a busy shared machine one thread can be several times faster than two
        (the threads wait on each other); on an idle one, more threads win. Weights, optimizer and
        RNG are untouched (no dropout RNG is drawn under fork_rng; gradients are discarded). On a GPU the
        CPU's threads do not run the model, and its asynchronous kernels would not be timed: nothing to tune."""
        cpus = usable_cpus()
        candidates = sorted({max(1, n) for n in (candidates or (cpus, 1))}, reverse=True)
        if len(candidates) == 1 or self.dist.enabled or self.device.type != "cpu":
            return torch.get_num_threads()
        batch = _map(lambda t: t.to(self.device), self.task.train_batches(self.epoch)[0])
        timings = {}
        with torch.random.fork_rng(devices=[]):
            for n in candidates:
                torch.set_num_threads(n)
                best = math.inf
                for _ in range(3):  # the first run of each count also warms up
                    t0 = time.perf_counter()
                    loss, _, _ = self.loss_module(batch, None, StepContext(self.step, self.epoch))
                    loss.backward()
                    best = min(best, time.perf_counter() - t0)
                timings[n] = best
        self.optimizer.zero_grad(set_to_none=True)
        chosen = min(timings, key=timings.get)
        torch.set_num_threads(chosen)
        return chosen

    def close(self) -> None:
        """Leaves the process group in order: waits for every rank (rank 0 may still be writing its
        checkpoint and plot), drops the DDP wrapper, which holds the group, and destroys the group while
        the interpreter is fully alive. Without this, gloo's worker threads could be torn down during
        interpreter shutdown, which aborts the process. Safe to call more than once or without DDP."""
        if not (self.dist.enabled and torch.distributed.is_initialized()):
            return
        dist_.barrier(self.dist)
        if not isinstance(self.loss_module, _LossModule):
            self.loss_module = self.loss_module.module
        import gc

        gc.collect()
        dist_.shutdown()

    # -- evaluation --

    def evaluate(self) -> dict[str, float]:
        """Runs the task's evaluation on rank 0 with RNG state untouched; shares the main metric."""
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                self.model.eval()
                try:
                    metrics = self.task.evaluate(self.model)
                finally:
                    self.model.train()
        return metrics

    def _evaluation_round(self, save: bool = True, scheduled: bool = True) -> bool:
        """Evaluate, keep the best checkpoint, log, save a resumable checkpoint; True: stop early.
        ``scheduled=False``: the evaluation a run makes where it stops off its schedule (``fit``)."""
        metrics = self.evaluate()
        self._last_eval_step = self.step  # on every rank: the ranks must agree on the collectives to run
        if self.dist.is_main:
            metrics["_step"] = self.step
        stop = self._after_eval(metrics, scheduled)
        if save:
            self.save()
        return stop

    def _after_eval(self, metrics: dict[str, float], scheduled: bool = True) -> bool:
        """Best checkpoint and early stopping; returns True when patience has run out (same on all ranks).

        ``best/`` keeps the best of every evaluation the run made. Patience counts scheduled evaluations only,
        against the best of those (``patience_best``): the evaluation a run makes where it stops off its schedule
        (``scheduled=False``: at a ``max_steps`` or ``time_budget`` stop) would otherwise make a run resumed from
        there stop at another step than one that never stopped."""
        stop = torch.zeros(1)
        if self.dist.is_main:
            self.last_metrics = metrics
            if self.task.main_metric not in metrics:
                named = sorted(k for k in metrics if not k.startswith("_"))
                raise TrainingError(f"the task's evaluate() returned {named}, without its main_metric "
                                    f"{self.task.main_metric!r} (which selects the best checkpoint)")
            value = metrics[self.task.main_metric]

            def beats(best) -> bool:
                return math.isfinite(value) and (best is None or (value > best if self.task.maximize else value < best))

            if beats(self.best["value"]):
                self.best = {"metric": self.task.main_metric, "value": value, "step": self.step}
                self._save_best()
            if scheduled and beats(self.patience_best):
                self.patience_best, self.bad_evals = value, 0
            elif scheduled:
                self.bad_evals += 1
            if self._log is not None:
                self._log.write({"split": "valid", "step": self.step, "epoch": self.epoch,
                                 **{k: v for k, v in metrics.items() if not k.startswith("_")}})
            stop[0] = float(self.config.patience > 0 and self.bad_evals >= self.config.patience)
        return bool(dist_.broadcast_(stop, self.dist)[0])

    def _at_epoch_end(self) -> bool:
        """Whether the loop stands at its epoch's end: no batch left to train on (under DDP a last batch with fewer
        rows than processes is skipped, so it counts as none)."""
        if not self._batches:
            return False
        left = self._batches[self.position:]
        world = self.dist.world_size if self.dist.enabled else 1
        return all(self.task.rows_in(b) < world for b in left) if world > 1 else not left

    def _on_schedule(self, stop_reason: str) -> bool:
        """Whether the step a run stopped at is one its schedule evaluates: a multiple of ``eval_every``, or an
        epoch's end where that is 0 (a stop there, by ``max_steps`` or the time budget, came before the loop's own
        evaluation of it)."""
        if self.config.eval_every:
            return self.step % self.config.eval_every == 0
        return stop_reason == "epochs" or self._at_epoch_end()

    def _save_best(self) -> None:
        if self.best_dir is not None:
            ckpt.save_checkpoint(self.best_dir, model_type=self.model_type, config=self.model_config,
                                 weights=self.model.state_dict(), vocab=self.vocab, task=self.task_info, step=self.step)

    # -- the loop --

    def fit(self, resume=None) -> TrainResult:
        c = self.config
        if resume is not None:
            self.resume(resume)
        else:
            seed_everything(c.seed)
        self._batches = None
        self._log = None
        if self.out_dir is not None and self.dist.is_main:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ckpt.CheckpointWriteError(f"cannot make the output folder {self.out_dir}: {e.strerror}") from None
            self._log = MetricsLog(self.out_dir / "metrics.jsonl", resume_step=self.step if resume is not None else None)
        # (Ctrl-C is caught until the final checkpoint is written: one during the final evaluation lets
        # it finish and save, instead of losing the steps since the last save)
        with _StopSignal() as sig:
            with self._progress_bar() as bar:
                self._bar = bar
                try:
                    stop_reason = self._loop(sig, bar)
                finally:
                    self._bar = None
            evaluated = stop_reason != "interrupted" and self._last_eval_step != self.step
            if evaluated:  # (off the schedule, unless the run stopped on it: see _after_eval)
                self._evaluation_round(save=False, scheduled=self._on_schedule(stop_reason))
            metrics = self.last_metrics if stop_reason != "interrupted" else {}
            # a snapshot of this step written already (by the evaluation at it, or the one resumed from) with nothing
            # evaluated since stands: saving the same step again would write a second snapshot of it, "step-N.1"
            unchanged = self._saved_step == self.step and not evaluated  # (alike on every rank)
            if unchanged and self.last_good is not None:  # (rank 0's file: the other ranks name none, as save())
                path = ckpt.resolve(self.last_good) if self.dist.is_main else None
            else:
                path = self.save()
        done = self.epoch + (self.position / len(self._batches) if self._batches else 0.0)
        count_unit = getattr(self.task, "count_unit", None)  # (a task need not subclass TrainTask)
        result = TrainResult(step=self.step, epoch=self.epoch, stop_reason=stop_reason,
                             metrics={k: v for k, v in metrics.items() if not k.startswith("_")},
                             best=self.best, elapsed=self.elapsed, tokens=self.tokens, checkpoint=path,
                             epochs_done=done, unit=count_unit(self.model) if count_unit else "tokens")
        if self.out_dir is not None and self.dist.is_main:
            result.best_checkpoint = self.best_dir if self.best_dir.exists() else None
            result.metrics_log = self._log.path
            result.log = MetricsLog.read(self._log.path)
            result.loss_plot = plot_loss(result.log, self.out_dir / "loss.png", title=self.description)
        return result

    def _progress_bar(self):
        """Steps out of --max-steps, or seconds out of --time-budget when that is the only limit."""
        if not self.progress:
            return contextlib.nullcontext(None)
        from tqdm.auto import tqdm

        c = self.config
        if c.time_budget and not c.max_steps:
            self._bar_by_time = True
            return tqdm(total=round(c.time_budget), initial=min(round(self.elapsed), round(c.time_budget)),
                        desc=self.description, unit="s", dynamic_ncols=True, mininterval=0.5,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s{postfix}")
        self._bar_by_time = False
        return tqdm(total=c.max_steps or None, initial=self.step, desc=self.description, unit=" steps",
                    dynamic_ncols=True, mininterval=0.5)

    def _training_batches(self) -> Sequence[Any]:
        """This epoch's batches, refused when none can be trained on (under DDP a batch with fewer rows
        than processes is skipped: each rank needs one — only an epoch's short last batch should be)."""
        batches = self.task.train_batches(self.epoch)
        if len(batches) == 0:
            raise TrainingError("the training data gives no batches (too little data for one batch)")
        world = self.dist.world_size if self.dist.enabled else 1
        if world > 1 and all(self.task.rows_in(b) < world for b in batches):
            raise TrainingError(f"every training batch has fewer rows than the {world} processes, which need one "
                                f"each: raise --batch_size to at least {world}")
        return batches

    def _loop(self, sig: _StopSignal, bar) -> str:
        c, info = self.config, self.dist
        epochs = c.epochs or (0 if (c.max_steps or c.time_budget) else 1)
        self._batches = self._training_batches()  # (checked for the first epoch too: one-epoch runs would "succeed")
        window = {"loss": 0.0, "tokens": 0, "clipped": 0, "steps": 0, "t0": time.perf_counter()}
        self.monitor.reset_window()
        self.loss_module.train()
        # A run interrupted right after a step due for evaluation (Ctrl-C is answered before it) evaluates
        # it now, as the uninterrupted run did then (evaluation leaves the random state alone).
        if c.eval_every and self.step and self.step % c.eval_every == 0 and self._last_eval_step != self.step:
            if self._evaluation_round():
                return "early_stopping"
        # A resumed run that had already reached its end stops here (the loop below checks epochs only
        # as one ends, the time budget only after a step, and patience only after an evaluation).
        if c.patience and self.bad_evals >= c.patience:
            return "early_stopping"
        if epochs and self.epoch >= epochs:
            return "epochs"
        if c.time_budget and self.elapsed >= c.time_budget:
            return "time_budget"
        while True:
            if c.max_steps and self.step >= c.max_steps:
                return "max_steps"
            if self.position >= len(self._batches):
                self.epoch, self.position, self.carry = self.epoch + 1, 0, None
                # (not again at a step evaluated already: a run that stopped at an epoch's end and resumes)
                if c.eval_every == 0 and self.epoch < (epochs or self.epoch + 1) and self._last_eval_step != self.step:
                    if self._evaluation_round():
                        return "early_stopping"
                if epochs and self.epoch >= epochs:
                    return "epochs"
                self._batches = self._training_batches()
                continue
            t_start = time.perf_counter()
            batch = self._batches[self.position]
            if info.enabled:
                if self.task.rows_in(batch) < info.world_size:  # too small to give every rank a row
                    self.position += 1
                    continue
                batch = self.task.shard(batch, info.rank, info.world_size)
            batch = _map(lambda t: t.to(self.device, non_blocking=True), batch)
            ctx = StepContext(self.step, self.epoch)
            probe_input = self._catch_probe_input()
            with probe_input:
                loss_sum, n_tokens, carry = self.loss_module(batch, self.carry, ctx)
            # one all-reduce: global loss and tokens, and flags every rank must agree on
            time_up = bool(c.time_budget and self.elapsed + (time.perf_counter() - t_start) >= c.time_budget)
            stats = torch.tensor([float(loss_sum.detach()), float(n_tokens),
                                  float(not torch.isfinite(loss_sum.detach())), float(sig.received is not None),
                                  float(time_up)], dtype=torch.float64)
            if info.enabled:
                stats = dist_.all_reduce_sum(stats.to(self.device), info).cpu()
            if stats[2] > 0:
                local = float(loss_sum.detach())
                self._diverged(f"loss is {local:.4g}" if not math.isfinite(local) else
                               f"loss is not finite on {int(stats[2])} of the {info.world_size} processes")
            if stats[1] <= 0:
                raise TrainingError(f"batch {self.position} of epoch {self.epoch} has no tokens to train on")
            lr = self.current_lr()
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            (loss_sum * (info.world_size / stats[1].item())).backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            if c.clip_norm > 0:
                norm = float(clip_grad_norm(params, c.clip_norm))
                clipped = norm > c.clip_norm
            else:
                clipped = c.clip_value > 0 and any(bool((p.grad.abs() > c.clip_value).any()) for p in params)
                norm = float(clip_grad_value(params, c.clip_value) if c.clip_value > 0 else
                             torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
            self.monitor.record(norm, self.step + 1)
            if not math.isfinite(norm):
                self._diverged(f"gradient norm is {norm}")
            self.optimizer.step()
            self.carry = _map(Tensor.detach, carry)  # truncated BPTT: keep the state, cut the graph
            self.step += 1
            self.position += 1
            self.tokens += int(stats[1])
            self.elapsed += time.perf_counter() - t_start
            window["loss"] += float(stats[0])
            window["tokens"] += int(stats[1])
            window["clipped"] += int(clipped)
            window["steps"] += 1
            if probe_input.x is not None:
                self._probe(probe_input.x, probe_input.lengths)
            self._report(window, lr, bar)
            if self.on_step is not None:
                self.on_step(self)
            if stats[3] > 0:
                return "interrupted"
            if stats[4] > 0:
                return "time_budget"
            if c.eval_every and self.step % c.eval_every == 0:
                if self._evaluation_round():
                    return "early_stopping"
            elif c.checkpoint_every and self.step % c.checkpoint_every == 0:
                # (not where a save follows at once: the run's last step, or an epoch's end that is evaluated)
                epoch_end = self._at_epoch_end()
                last_epoch_ends = bool(epochs) and epoch_end and self.epoch + 1 >= epochs
                if self.step != c.max_steps and not last_epoch_ends and not (epoch_end and not c.eval_every):
                    self.save()

    def _report(self, window: dict, lr: float, bar) -> None:
        c = self.config
        now = time.perf_counter()
        if bar is not None and (window["steps"] % max(1, min(c.log_every, 10)) == 0 or self.step == c.max_steps):
            rate = window["tokens"] / max(now - window["t0"], 1e-9)
            count_unit = getattr(self.task, "count_unit", None)  # (what the rate counts: tokens, examples, …)
            unit = "tok" if count_unit is None or count_unit(self.model) == "tokens" else count_unit(self.model)
            bar.set_postfix_str(f"step {self.step}  loss {window['loss'] / max(window['tokens'], 1):.3f}  "
                                f"{rate:,.0f} {unit}/s  lr {lr:.2g}", refresh=False)
        if bar is not None:
            if self._bar_by_time:
                bar.update(min(self.elapsed, bar.total) - bar.n)
            else:
                bar.update(1)
        if self.step % c.log_every:  # at every multiple of log_every: a resumed run's first window may hold
            return  # fewer steps, and the log stays continuous
        norms = self.monitor.summary()
        record = {"split": "train", "step": self.step, "epoch": self.epoch,
                  "loss": window["loss"] / max(window["tokens"], 1), "lr": lr,
                  "grad_norm": norms["grad_norm_mean"], "grad_norm_max": norms["grad_norm_max"],
                  "clip_rate": window["clipped"] / window["steps"],
                  "tokens_per_s": window["tokens"] / max(now - window["t0"], 1e-9), "elapsed": round(self.elapsed, 3)}
        if self._log is not None:
            self._log.write(record)
        window.update(loss=0.0, tokens=0, clipped=0, steps=0, t0=now)
        self.monitor.reset_window()

    # -- gradient health --

    def _catch_probe_input(self) -> "_ProbeInput":
        """On a probe step (rank 0), catches what the recurrent layer reads in this step's forward."""
        n = self.config.probe_every
        due = self._probe_layer is not None and n and (self.step + 1) % n == 0 and self.dist.is_main
        return _ProbeInput(self._probe_layer if due else None)

    def _probe(self, x: Tensor, lengths=None) -> None:
        """Vanishing-gradient probe on up to 8 rows of ``x`` from the zero state, in float64 (a vanishing
        gradient underflows float32 within a few hundred steps) on a copy of the layer, so neither the
        weights nor their ``.grad`` are touched. Of a padded batch (``lengths``) it takes the longest rows, cut
        to their length: the probe's loss reads the last step, which is real for them. The stepped pass is not
        checked against the layer (``check=False``): that would cost another forward, and tests/diagnostics
        already check it."""
        try:
            layer = copy.deepcopy(self._probe_layer).double()
            if lengths is not None:
                lengths = torch.as_tensor(lengths, device="cpu")
                longest = int(lengths.max())
                pick = (lengths == longest).nonzero().flatten().to(x.device)
                x = x.index_select(0, pick)[:, :longest] if layer.batch_first else x.index_select(1, pick)[:longest]
            rows = x[:8] if layer.batch_first else x[:, :8]
            self.monitor.probe(layer, rows.double(), step=self.step, check=False)
        except (RuntimeError, ValueError, TypeError) as e:  # a diagnostic must not end the run
            self._probe_layer = None
            warnings.warn(f"the vanishing-gradient probe failed at step {self.step} ({str(e).splitlines()[0]}); "
                          f"it is off for the rest of this run", GradientWarning)

    def _gradient_event(self, event: GradientEvent) -> None:
        """A monitor warning: a record in metrics.jsonl, and a line above the progress bar (a Python
        warning when there is no bar)."""
        if not self.dist.is_main:
            return
        if self._log is not None:
            self._log.write({"split": "warning", "step": event.step, "epoch": self.epoch, "kind": event.kind,
                             "value": event.value, "message": event.message})
        if self._bar is not None:
            self._bar.write(f"rnnkit: warning: {event.message}", file=sys.stderr)
        else:
            warnings.warn(event.message, GradientWarning)

    def _diverged(self, what: str) -> None:
        kept = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was saved"
        raise TrainingError(f"training diverged at step {self.step + 1} (epoch {self.epoch}): {what}; "
                            f"stopped, {kept} (try a lower --lr or --clip_norm)")


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _field_defaults(cls) -> dict[str, Any]:
    """The defaults of a config dataclass's fields (none for a model that is not built from one)."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _config_changes(what: str, old: dict, new: dict) -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if _canon(a) != _canon(b):
            out.append(f"{what} {k} {a!r} → {b!r}")
    return out


def _canon(v):
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    return v


__all__ = ["Trainer", "TrainTask", "TrainResult", "TrainingError", "ConfigMismatch", "StepContext", "seed_everything"]
