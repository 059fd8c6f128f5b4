"""What every application task shares: reading its data (files or ``builtin:NAME``), the seeded
held-out split, the model built from its config, and the state a checkpoint keeps so that
``evaluate``/``predict`` rebuild the same tokenizers and label sets.

A task class knows (class attributes):
    name           the CLI name (``lm``, ``classify``, …)
    model_type     the key of its model in ``rnnkit.models.MODEL_TYPES``
    data_config    its dataclass of data options (``--bptt``, ``--tokenizer``, …)
    derived        model config fields the data decides (``vocab_size``, ``num_classes``, …)
    train_defaults / model_defaults   sensible settings for the task, under the user's overrides
and implements ``read(paths)``, ``fit(train)`` (vocabularies from the training data), ``derived_config()``,
``vocab_state()``/``load_vocab_state()``, ``train_batches``, ``loss``, ``evaluate``, ``predict``.
"""
from __future__ import annotations
import contextlib
import dataclasses
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from ...data import BUILTIN_DATASETS, SPECIALS, DataError, holdout, load_builtin
from ..trainer import TrainTask


@contextlib.contextmanager
def naming_data(train_paths: Sequence[str] | None, valid_paths: Sequence[str] | None):
    """A :class:`DataError` about a whole split ("the training text has 3 tokens, …", "the validation …") raised
    inside, without a file of its own, is raised again naming the file(s) the split came from (a built-in
    dataset, ``builtin:NAME``, is named as such)."""
    try:
        yield
    except DataError as e:
        paths = {"the training ": train_paths, "the validation ": valid_paths}
        for start, where in paths.items():
            if where and e.path is None and e.reason.startswith(start):
                raise DataError(e.reason, ", ".join(map(str, where))) from None
        raise


class Task(TrainTask):
    name: ClassVar[str]
    model_type: ClassVar[str]
    data_config: ClassVar[type]
    derived: ClassVar[tuple[str, ...]] = ()
    train_defaults: ClassVar[dict[str, Any]] = {}
    model_defaults: ClassVar[dict[str, Any]] = {}
    #: How many data files one split takes (translation: a source and a target file, or one TSV).
    max_files: ClassVar[int] = 1
    #: Per built-in dataset, data options that suit it (under the user's overrides).
    builtin_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Data options added after checkpoints were first written: left out of ``data_dict`` at their
    #: default, so that a run saved before they existed (which used the default) still resumes.
    later_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data: Any, *, batch_size: int = 32, seed: int = 0) -> None:
        self.data = data  # the data_config dataclass
        self.batch_size, self.seed = batch_size, seed
        self.train_set: Any = None
        self.valid_set: Any = None
        #: Text in Unicode's NFC (a decomposed "é" is the token typed "é"), as the tokenizers fit here record it;
        #: a run resumed from a checkpoint saved before rnnkit normalised fits as that run did (``build_run``).
        self.nfc = True

    # -- data --

    @classmethod
    def read(cls, paths: Sequence[str], data) -> Any:  # pragma: no cover - every task overrides
        raise NotImplementedError

    @classmethod
    def read_scored(cls, paths: Sequence[str], data, classes: Sequence[str] = ()) -> Any:
        """``read`` of a file to be scored against a model that knows ``classes`` (the training data's): a
        validation or evaluation file. A task whose reader guesses at a header can look at them."""
        return cls.read(paths, data)

    @classmethod
    def load_splits(cls, data_paths: Sequence[str], valid_paths: Sequence[str] | None, data,
                    seed: int, valid_fraction: float = 0.1) -> tuple[Any, Any, str]:
        """``(train, valid, how the validation set was made)`` from files or ``builtin:NAME``."""
        if len(data_paths) == 1 and data_paths[0].startswith("builtin:"):
            name = data_paths[0].removeprefix("builtin:")
            if name not in BUILTIN_DATASETS:
                raise DataError(f"unknown built-in dataset {name!r}; expected one of {', '.join(sorted(BUILTIN_DATASETS))}")
            ds = BUILTIN_DATASETS[name]
            if ds.task == "regression":  # tensors for the library and `rnnkit experiment`, no train task
                raise DataError(f"built-in dataset {name!r} is for the Python API (rnnkit.data.load_builtin) and "
                                f"'rnnkit experiment {name}', not 'rnnkit train'")
            if ds.task != cls.name:
                raise DataError(f"built-in dataset {name!r} is for 'rnnkit train {ds.task}', not '{cls.name}'")
            splits = load_builtin(name)  # fixed data (its own seed 0): --seed varies the training only
            train, valid = splits["train"], splits["valid"]
            how = f"built-in {name}: {ds.source}"
        else:
            cls._check_count(data_paths, "--data")
            train = cls.read(data_paths, data)
            how = ""
            valid = None
        if valid_paths:
            if any(v.startswith("builtin:") for v in valid_paths):
                raise DataError("--valid takes files; a built-in dataset brings its own validation split: give it as "
                                "--data builtin:NAME alone")
            cls._check_count(valid_paths, "--valid")
            scored = cls.read_scored.__func__ is not Task.read_scored.__func__  # (only a task that looks at them
            classes = sorted({c for ex in train for c in cls.classes_of(ex)}) if scored else ()  # needs the classes)
            valid = cls.read_scored(valid_paths, data, classes)
            how = "from --valid"
        elif valid is None:
            try:
                train, valid = holdout(train, valid_fraction, seed=seed)
            except ValueError as e:
                raise DataError(f"{data_paths[0]}: cannot hold out a validation set ({e})") from None
            how = f"held out {valid_fraction:.0%} of --data (seed {seed})"
            train, valid, moved = cls._classes_back_to_training(train, valid)
            if moved:
                how += f"; {moved} with a class no other example has kept for training"
            if isinstance(valid, list) and not valid:  # every held-out example's class was its only one
                raise DataError(f"{data_paths[0]}: no validation examples are left (the {moved} held out had classes "
                                f"no training example has, and went back to training); give --valid FILE, or more "
                                f"examples per class")
        return train, valid, how

    @classmethod
    def classes_of(cls, example) -> Sequence[str]:
        """The classes the model must have seen to be scored on ``example`` (a classifier's label, a
        tagger's tags); none for tasks without a closed set of outputs."""
        return ()

    @classmethod
    def _classes_back_to_training(cls, train, valid) -> tuple[Any, Any, int]:
        """A held-out example with a class the training part lacks goes back to training (the model could
        never predict it, and evaluation refuses unseen classes); a random holdout of a rare class would
        otherwise decide by ``--seed`` whether the run starts."""
        if not isinstance(train, list) or not isinstance(valid, list):
            return train, valid, 0
        known = {c for ex in train for c in cls.classes_of(ex)}
        kept, back = [], []
        for ex in valid:
            new = set(cls.classes_of(ex)) - known
            (back if new else kept).append(ex)
            known |= new
        return train + back, kept, len(back)

    @classmethod
    def _check_count(cls, paths: Sequence[str], flag: str) -> None:
        if not 1 <= len(paths) <= cls.max_files:
            want = "one file" if cls.max_files == 1 else f"1 to {cls.max_files} files"
            raise DataError(f"{flag} takes {want} for '{cls.name}', got {len(paths)}")

    def fit(self, train: Any) -> None:  # pragma: no cover - every task overrides
        raise NotImplementedError

    def set_data(self, train: Any, valid: Any) -> None:
        """Encode the splits (after ``fit`` or ``load_vocab_state``). A ``DataError`` about the validation
        split's contents as a whole begins "the validation …", so ``set_data_naming`` can name its file."""
        raise NotImplementedError  # pragma: no cover

    def set_data_naming(self, train: Any, valid: Any, valid_paths: Sequence[str] | None,
                        train_paths: Sequence[str] | None = None) -> None:
        """``set_data``, with a problem of a split's contents named by the file(s) it was read from (the readers
        name a file and line; these checks see the split as a whole)."""
        with naming_data(train_paths, valid_paths):
            self.set_data(train, valid)

    # -- model --

    def sizes(self, train: Any, valid: Any) -> dict[str, int]:
        """Items per split for the banner: examples (sequences, pairs, images), or time steps of a series."""
        def count(data: Any) -> int:
            if hasattr(data, "values") and hasattr(data, "columns"):
                return len(data.values)
            if hasattr(data, "captions"):
                return len(data.captions)
            return len(data)

        return {"train": count(train), "valid": count(valid)}

    def derived_config(self) -> dict[str, Any]:
        """The model config fields that come from the data (vocabulary sizes, label counts, …)."""
        return {}

    def prepare_model(self, model: nn.Module) -> None:
        """Anything the fresh model learns from the training data before training (the forecaster's
        scaler); not called on --resume, whose checkpoint already holds it."""

    def vocab_state(self) -> dict[str, Any]:
        return {}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        pass

    # -- prediction --

    def predict(self, model: nn.Module, lines: Sequence[str]) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def baseline(self) -> dict[str, float]:
        """The trivial baseline's score on the validation set (in the same units as evaluate)."""
        return {}

    def data_dict(self) -> dict[str, Any]:
        defaults = {f.name: f.default for f in dataclasses.fields(self.data)}
        return {k: v for k, v in dataclasses.asdict(self.data).items()
                if not (k in self.later_options and v == defaults[k])}

    def data_note(self) -> str:
        """What the banner adds about the data read (after ``fit``), as ``"; …"``, or nothing."""
        return ""

    def check_model_options(self, model: dict[str, Any]) -> None:
        """Refuse model settings (``--key value``) that this run's data options would leave unused."""


def refuse_unknown_only(size: int, what: str, min_freq: int) -> None:
    """A vocabulary of ``size`` entries that holds the special tokens alone: every token of ``what`` would
    read as ``<unk>`` (``--min_freq`` above every count), and the model would learn nothing from its input."""
    if size <= len(SPECIALS):
        raise DataError(f"no token of {what} occurs --min_freq {min_freq} times: the model would read <unk> "
                        f"alone; lower --min_freq")


def check_data_config(cfg, *positive: str) -> None:
    """Types of every field, and the named fields > 0 (for the tasks' data dataclasses)."""
    from ...models.config import check_positive, check_types

    check_types(cfg)
    check_positive(cfg, *positive)
    fraction = getattr(cfg, "valid_fraction", 0.5)
    if not 0 < fraction < 1:
        raise ValueError(f"{type(cfg).__name__}: valid_fraction must be in (0, 1), got {fraction}")


def batches_of(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def as_written(tokenizer, text: str) -> str:
    """``text`` as the tokenizer writes text back (its case folding and spacing), every word kept as it
    is — what a decoded model output is compared against. (``decode(encode(text))`` would also turn the
    words outside the vocabulary into ``<unk>``, which an output of ``<unk>`` would then match.)"""
    return tokenizer.join(tokenizer.split(text))
