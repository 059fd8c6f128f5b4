"""Writers: the inverse of each reader, so data held in Python (the built-in sets, a user's
predictions) can be saved in the formats the CLI reads. ``read_X(write_X(path, data)) == data``
for data the format can hold (no tabs or newlines inside a field of a tab-separated file, no
whitespace inside a CoNLL token). Each returns the path it wrote, creating parent folders.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from .readers import Series


def _target(path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


_SPACE = " \t\n"


def _check_field(writer: str, value: str, forbidden: str, what: str) -> str:
    bad = [c for c in forbidden if c in value]
    if bad:
        raise ValueError(f"{writer}: {what} {value[:40]!r} contains {bad[0]!r}, which the format cannot hold")
    return value


def write_text(path: str | os.PathLike, text: str) -> Path:
    p = _target(path)
    p.write_text(text, encoding="utf-8")
    return p


def write_labelled(path: str | os.PathLike, examples: Sequence[tuple[str, str]], *, delimiter: str | None = None) -> Path:
    """A ``text,label`` file with a header: for ``.tsv``, tab-separated without quoting (fields may
    not hold tabs or newlines), else CSV with quoting where needed."""
    p = _target(path)
    sep = delimiter or ("\t" if p.suffix.lower() in (".tsv", ".tab") else ",")
    if sep == "\t":
        check = lambda s: _check_field("write_labelled", s, "\t\n", "field")  # noqa: E731
        return write_text(p, "text\tlabel\n" + "".join(f"{check(t)}\t{check(y)}\n" for t, y in examples))
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(examples)
    return p


def write_conll(path: str | os.PathLike, sentences: Sequence[tuple[Sequence[str], Sequence[str]]]) -> Path:
    """``TOKEN<TAB>TAG`` lines, a blank line after each sentence."""
    lines = []
    for tokens, tags in sentences:
        if len(tokens) != len(tags):
            raise ValueError(f"write_conll: expected one tag per token ({len(tokens)}), got {len(tags)}")
        for tok, tag in zip(tokens, tags):
            tok = _check_field("write_conll", tok, _SPACE, "token")
            tag = _check_field("write_conll", tag, _SPACE, "tag")
            lines.append(f"{tok}\t{tag}\n")
        lines.append("\n")
    return write_text(path, "".join(lines))


def write_parallel(path: str | os.PathLike, pairs: Sequence[tuple[str, str]]) -> Path:
    """``SOURCE<TAB>TARGET`` lines."""
    check = lambda s: _check_field("write_parallel", s, "\t\n", "sentence")  # noqa: E731
    return write_text(path, "".join(f"{check(s)}\t{check(t)}\n" for s, t in pairs))


def write_series(path: str | os.PathLike, series: Series) -> Path:
    """A CSV with a header of column names and one row per time step (``repr`` floats, so values
    read back exactly as float32)."""
    p = _target(path)
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(series.columns)
        w.writerows([repr(float(x)) for x in row] for row in series.values.tolist())
    return p
