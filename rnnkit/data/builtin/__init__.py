"""Built-in datasets that need no download: generated tasks, and real data shipped inside the
standard library or the packages of the ``data`` extra (faker, statsmodels, scikit-learn, num2words).

``load_builtin(name, **options) -> {"train": X, "valid": X}`` where X is exactly what the task's
reader returns for a file (``str`` for ``lm``, ``list[(text, label)]`` for ``classify``, …), so the
trainer and the CLI take one code path for files and built-ins. ``write_builtin(name, directory)``
writes both splits in the task's file format and returns their paths; reading them back gives
the same data. Everything is seeded (``seed=0`` by default).

``BUILTIN_DATASETS`` lists every set with its task, a one-line description and its source.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..captions import write_captions
from ..split import holdout
from ..writers import write_conll, write_labelled, write_parallel, write_series, write_text
from .numbers import DIGIT_WORDS, digit_captions, number_words
from .people import NAME_LOCALES, entities, person_names
from .series import co2, sunspots
from .synthetic import adding_problem, copy_memory, noisy_sine, reversal
from .text import python_docs, python_docs_text, sentiment


@dataclass(frozen=True)
class BuiltinDataset:
    """One built-in set. ``task`` is the ``rnnkit train`` task it feeds (``regression`` has no CLI
    task: tensors only); ``load(**options)`` returns ``{"train": X, "valid": X}``. ``seeded`` is
    False for fixed data (the same whatever the seed)."""

    name: str
    task: str
    description: str
    source: str
    load: Callable[..., dict[str, Any]]
    seeded: bool = True


def _examples(make: Callable[..., Any], valid_fraction: float) -> Callable[..., dict[str, Any]]:
    """A loader that makes the whole set with ``seed`` and holds out a seeded ``valid_fraction``."""

    def load(*, seed: int = 0, valid_fraction: float = valid_fraction, **options) -> dict[str, Any]:
        train, valid = holdout(make(seed=seed, **options), valid_fraction, seed=seed)
        return {"train": train, "valid": valid}

    load.forwards_to = make  # (its options are the loader's: ``load_builtin`` lists them)
    return load


def _series(make: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """A loader for a series: the last ``valid_fraction`` (default 0.2) of the time steps is validation."""

    def load(*, valid_fraction: float = 0.2, **options) -> dict[str, Any]:
        train, valid = holdout(make(**options), valid_fraction)
        return {"train": train, "valid": valid}

    load.forwards_to = make
    return load


def _digits(*, seed: int = 0, n: int = 2000, n_valid: int = 300, **options) -> dict[str, Any]:
    return {
        "train": digit_captions(n, part="train", seed=seed, **options),
        "valid": digit_captions(n_valid, part="valid", seed=seed, **options),
    }


_digits.forwards_to = digit_captions


def _options(load: Callable[..., Any]) -> list[str]:
    """The keyword options a loader takes (``seed`` apart), those it hands on to its generator included."""
    names: list[str] = []
    fn = load
    while fn is not None:
        names += [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty
                  and p.name not in ("seed", "part") and p.name not in names]
        fn = getattr(fn, "forwards_to", None)
    return names


_ENTRIES = [
    BuiltinDataset("pydoc", "lm", "The Python documentation's topics (what help('assert') prints), ~465k characters; "
                   "the last 50,000 are validation", "pydoc_data.topics (Python standard library)", python_docs, seeded=False),
    BuiltinDataset("names", "classify", f"Person names labelled with one of {len(NAME_LOCALES)} languages "
                   f"({', '.join(NAME_LOCALES.values())}; Japanese romanised), up to 400 per language",
                   "faker, locales " + ", ".join(NAME_LOCALES), _examples(person_names, 0.1)),
    BuiltinDataset("sentiment", "classify", "Template sentences with negation and 'but' clauses labelled positive/negative; "
                   "word order matters", "generated (rnnkit)", _examples(sentiment, 0.1)),
    BuiltinDataset("entities", "tag", "Sentences with person and city names tagged B-PER I-PER B-LOC I-LOC O",
                   "faker (en_US names; cities of 5 locales) in 16 templates", _examples(entities, 0.1)),
    BuiltinDataset("copy", "tag", "Copy memory: recall 5 digits after 19 blanks and a go marker", "generated (rnnkit)",
                   _examples(copy_memory, 0.1)),
    BuiltinDataset("reverse", "translate", "Reverse a string of 3-8 digits ('3 1 4' -> '4 1 3')", "generated (rnnkit)",
                   _examples(reversal, 0.1)),
    BuiltinDataset("numbers", "translate", "Numbers 0-9999 to English words ('3 4 2' -> 'three hundred and forty-two')",
                   "num2words", _examples(number_words, 0.1)),
    BuiltinDataset("sunspots", "forecast", "Yearly mean sunspot numbers 1700-2008 (309 values)",
                   "statsmodels.datasets.sunspots (NOAA NGDC)", _series(sunspots), seeded=False),
    BuiltinDataset("co2", "forecast", "Weekly Mauna Loa CO2 in ppm, 1958-2001 (2,284 values; 59 gaps linearly interpolated)",
                   "statsmodels.datasets.co2 (Keeling & Whorf, Scripps)", _series(co2), seeded=False),
    BuiltinDataset("sine", "forecast", "A sine of period 50 plus Gaussian noise (sd 0.1), 2,000 steps",
                   "generated (rnnkit)", _series(noisy_sine)),
    BuiltinDataset("digits", "caption", "Strips of 3 handwritten 8x8 digits captioned 'three one four'; "
                   "validation strips use unseen scans", "sklearn.datasets.load_digits (UCI optical digits)", _digits),
    BuiltinDataset("adding", "regression", "The adding problem: sum of the 2 marked values in a sequence of 50",
                   "generated (rnnkit)", _examples(adding_problem, 0.1)),
]
BUILTIN_DATASETS: dict[str, BuiltinDataset] = {d.name: d for d in _ENTRIES}


def load_builtin(name: str, *, seed: int = 0, **options) -> dict[str, Any]:
    """``{"train": X, "valid": X}`` for the built-in set ``name``. ``seed`` picks the sample (fixed
    sets — pydoc, sunspots, co2 — ignore it); ``options`` go to its generator (``valid_fraction``,
    sizes such as ``n`` or ``per_locale``: see each generator's docstring)."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"unknown built-in dataset {name!r}, expected one of {sorted(BUILTIN_DATASETS)}")
    d = BUILTIN_DATASETS[name]
    accepted = _options(d.load)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"built-in dataset {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                        f"{', '.join(accepted) or 'none'}" + ("" if d.seeded else " (and it takes no seed)"))
    return d.load(seed=seed, **options) if d.seeded else d.load(**options)


def _write_tensors(path: Path, data: tuple) -> Path:
    inputs, targets = data
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, inputs=inputs.numpy(), targets=targets.numpy())
    return path


# task -> (file name suffix, writer(path, data))
_FORMATS: dict[str, tuple[str, Callable[[Path, Any], Path]]] = {
    "lm": (".txt", write_text),
    "classify": (".csv", write_labelled),
    "tag": (".conll", write_conll),
    "translate": (".tsv", write_parallel),
    "forecast": (".csv", write_series),
    "caption": (".npz", write_captions),
    "regression": (".npz", _write_tensors),
}


def write_builtin(
    name: str, directory: str | os.PathLike, *, seed: int = 0, image_folder: bool = False, **options
) -> dict[str, Path]:
    """Write the built-in set ``name`` as ``DIRECTORY/train.EXT`` and ``DIRECTORY/valid.EXT`` in its
    task's format (``.txt``, ``.csv``, ``.conll``, ``.tsv``, ``.npz``; captions as folders of PNGs
    plus ``captions.tsv`` with ``image_folder=True``). Returns ``{"train": path, "valid": path}``."""
    data = load_builtin(name, seed=seed, **options)
    task = BUILTIN_DATASETS[name].task
    suffix, writer = _FORMATS[task]
    if task == "caption" and image_folder:
        suffix = ""
    return {split: writer(Path(directory) / f"{split}{suffix}", data[split]) for split in ("train", "valid")}


__all__ = [
    "BUILTIN_DATASETS", "BuiltinDataset", "load_builtin", "write_builtin",
    "python_docs", "python_docs_text", "person_names", "sentiment", "entities", "copy_memory", "reversal",
    "number_words", "sunspots", "co2", "noisy_sine", "digit_captions", "adding_problem", "NAME_LOCALES", "DIGIT_WORDS",
]
