"""Each ``rnnkit train`` task mapped to its reader, model, loss and metric — and the two ways the CLI
uses them: ``build_run`` (data + settings → a Trainer ready to fit) and ``load_trained`` (a
checkpoint → the task with its tokenizers, and the trained model).

=========  ===================  ============================  ==========================
task       reader               model (MODEL_TYPES key)       main metric (baseline)
=========  ===================  ============================  ==========================
lm         read_text            language_model                loss, bits/char (unigram)
classify   read_labelled        classifier                    accuracy (majority class)
tag        read_conll           tagger                        entity F1 (all O)
translate  read_parallel        seq2seq                       BLEU, exact match (copy source)
forecast   read_series          forecaster                    MAE (last value)
caption    read_captions        captioner                     exact match, BLEU (most frequent caption)
=========  ===================  ============================  ==========================
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ...data.captions import CAPTIONS_FILE
from ..checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_weights, other_version
from ..config import TrainConfig
from ..options import OptionError, Settings, build
from ..trainer import Trainer, seed_everything
from .base import Task, naming_data
from .caption import CaptionTask
from .classify import ClassifyTask
from .forecast import ForecastTask
from .lm import LanguageModelTask
from .tag import TagTask
from .translate import TranslateTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (LanguageModelTask, ClassifyTask, TagTask, TranslateTask,
                                                    ForecastTask, CaptionTask)}


def model_class(model_type: str) -> type[nn.Module]:
    from ...models import MODEL_TYPES

    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"unknown model type {model_type!r}; this rnnkit knows {sorted(MODEL_TYPES)}")
    return MODEL_TYPES[model_type]


def settings_for(task: type[Task], data_paths: Sequence[str] = ()) -> Settings:
    """The option table of ``task`` with its defaults (and its built-in dataset's) filled in."""
    cls = model_class(task.model_type)
    s = Settings({"train": TrainConfig, "model": cls.config_class, "data": task.data_config},
                 exclude={"model": set(task.derived)})
    s.values["train"].update(task.train_defaults)
    s.values["model"].update(task.model_defaults)
    if len(data_paths) == 1 and data_paths[0].startswith("builtin:"):
        s.values["data"].update(task.builtin_defaults.get(data_paths[0].removeprefix("builtin:"), {}))
    return s


@dataclass
class Run:
    trainer: Trainer
    task: Task
    train_config: TrainConfig
    valid_source: str          # how the validation set was made
    sizes: dict[str, int]      # examples (or tokens) per split


def data_sources(data: Sequence[str], valid: Sequence[str] | None) -> dict[str, list]:
    """What a run read, for ``--resume`` to compare: each ``--data``/``--valid`` file's size and SHA-256, in order
    (a built-in dataset by its name: its data are fixed)."""
    def fingerprint(path: str) -> dict[str, Any]:
        if path.startswith("builtin:"):
            return {"builtin": path.removeprefix("builtin:")}
        root = Path(path)
        if root.is_dir():  # a caption folder: its captions file and the images it names, nothing else there
            listing = root / CAPTIONS_FILE
            text = listing.read_text(encoding="utf-8", errors="replace").replace("\ufeff", "")  # (as the reader)
            names = [line.split("\t", 1)[0].strip() for line in text.splitlines()]
            files = [listing] + [root / n for n in names if n and (root / n).is_file()]
        elif not root.is_file():  # a pipe (<(zcat …)), read once already: nothing left to compare
            return {"unverified": "not a regular file"}
        else:
            files = [root]
        digest, size = hashlib.sha256(), 0
        for file in files:
            if root.is_dir():
                digest.update(str(file.relative_to(root)).encode() + b"\0")
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
                    size += len(block)
        return {"size": size, "sha256": digest.hexdigest()}

    return {"data": [fingerprint(str(p)) for p in data], "valid": [fingerprint(str(p)) for p in valid or ()]}


def saved_nfc(vocab: Any) -> bool:
    """Whether a checkpoint's vocabulary state was fitted on NFC text: False where any character or word
    tokenizer in it, or a tagger's words, was saved before rnnkit normalised (no ``nfc`` entry)."""
    flags: list[bool] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if x.get("format") == "rnnkit.tokenizer" and x.get("kind") in ("char", "word"):
                flags.append(bool((x.get("options") or {}).get("nfc", False)))
            elif "words" in x and "tags" in x:  # (the tagger's state)
                flags.append(bool(x.get("nfc", False)))
            for v in x.values():
                walk(v)

    walk(vocab)
    return all(flags)


def build_run(task_name: str, data: Sequence[str], valid: Sequence[str] | None, settings: Settings, *,
              out_dir: str | Path | None, progress: bool = True, device: str = "auto", nfc: bool = True) -> Run:
    """Reads the data, fits the vocabularies, builds the model from the settings and returns a Trainer."""
    task_cls = TASKS[task_name]
    train_cfg = build(TrainConfig, settings.values["train"])
    data_cfg = build(task_cls.data_config, settings.values["data"])
    train, valid_set, how = task_cls.load_splits(data, valid, data_cfg, train_cfg.seed,
                                                 getattr(data_cfg, "valid_fraction", 0.1))
    task = task_cls(data_cfg, batch_size=train_cfg.batch_size, seed=train_cfg.seed)
    task.nfc = nfc  # (False to resume a run fitted before rnnkit normalised text: ``saved_nfc``)
    task.check_model_options(settings.values["model"])
    with naming_data(data, valid):
        task.fit(train)
    task.set_data_naming(train, valid_set, valid, data)
    seed_everything(train_cfg.seed)  # the model's initialisation follows --seed
    cls = model_class(task_cls.model_type)
    model = build(cls.from_config, {}, config={**settings.values["model"], **task.derived_config()})
    task.prepare_model(model)
    trainer = Trainer(model, task, train_cfg, out_dir=out_dir, model_type=task_cls.model_type,
                      model_config=_jsonable(dataclasses.asdict(model.config)), vocab=task.vocab_state(),
                      task_info={"name": task_name, "data": task.data_dict(),
                                 "sources": data_sources(data, valid)}, progress=progress, device=device,
                      description=f"train {task_name}")
    return Run(trainer, task, train_cfg, how, task.sizes(train, valid_set))


def load_trained(path: str | Path, *, device: str = "cpu") -> tuple[Task, nn.Module, Checkpoint]:
    """The task (tokenizers, labels; no data yet) and the trained model (eval mode) of a checkpoint."""
    ckpt = load_checkpoint(path, trainer=False)
    info = ckpt.task or {}
    if not isinstance(info, dict):
        raise CheckpointError(f"checkpoint {ckpt.path}: config.json's \"task\" must be an object with the task's "
                              f"name and data options, got {info!r}")
    name = info.get("name")
    if name not in TASKS:
        raise CheckpointError(f"checkpoint {ckpt.path} was not written by 'rnnkit train' (no known task: {name!r})")
    task_cls = TASKS[name]
    if ckpt.model_type != task_cls.model_type:
        raise CheckpointError(f"checkpoint {ckpt.path} holds a {ckpt.model_type!r} model, but task {name!r} "
                              f"needs {task_cls.model_type!r}")
    try:
        data_cfg = task_cls.data_config(**info.get("data", {}))
        model = model_class(ckpt.model_type).from_config(ckpt.config)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {ckpt.path} does not match its model: {str(e).splitlines()[0]}"
                              f"{other_version(ckpt)}") from None
    load_weights(model, ckpt)
    task = task_cls(data_cfg, seed=0)
    load_vocab(task, ckpt)
    task.trained_steps = ckpt.meta.get("step", 0)
    return task, model.to(device).eval(), ckpt


def load_vocab(task: Task, ckpt: Checkpoint) -> None:
    """``task.load_vocab_state`` from the checkpoint's vocab.json, then a check that the vocabulary fits
    the model: each size the data decides (``task.derived``: vocabulary size, label count, …) must be
    the one in the model's config, which the weights were checked against. Anything missing, malformed
    or mismatched is a ``CheckpointError`` naming the checkpoint and the entry."""
    where = f"checkpoint {ckpt.path}"
    try:
        task.load_vocab_state(ckpt.vocab if ckpt.vocab is not None else {})
        derived = task.derived_config()
    except KeyError as e:
        if ckpt.vocab is None:
            raise CheckpointError(f"{where} has no vocab.json, which a {task.name!r} model needs "
                                  f"(expected its {e.args[0]!r} entry)") from None
        keys = sorted(ckpt.vocab) if isinstance(ckpt.vocab, dict) else type(ckpt.vocab).__name__
        raise CheckpointError(f"{where}: vocab.json lacks the entry {e.args[0]!r} (its top-level keys: {keys})") from None
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{where}: vocab.json is malformed ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for key in task.derived:
        if key in derived and key in ckpt.config and _jsonable(derived[key]) != _jsonable(ckpt.config[key]):
            raise CheckpointError(f"{where}: vocab.json does not match the model: it gives {key} = {derived[key]!r}, "
                                  f"the model has {key} = {ckpt.config[key]!r}")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


__all__ = ["TASKS", "Task", "Run", "build_run", "load_trained", "settings_for", "model_class", "OptionError"]
