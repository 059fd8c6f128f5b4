"""Writers: the inverse of each reader, so data held in Python (the built-in sets, a user's
predictions) can be saved in the formats the CLI reads. ``read_X(write_X(path, data)) == data``
for data the format can hold — no line break (``\n`` or a lone ``\r``) inside a text field (nor a
``\r`` in a plain text), no tab inside a field of a tab-separated file, no empty field or one that
begins or ends with whitespace (the readers strip fields), no whitespace in (and no empty) CoNLL token,
no empty sentence, no series column name that reads as a number, no empty data, no non-finite series
value, no U+FEFF at the start of the data or of a line (readers drop it as a byte-order mark) — and
raises ValueError for
anything else rather than write a file its reader would refuse or read differently. Each returns the path it wrote, creating parent folders.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import torch

from .readers import Series, _number


def _target(path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


#: Line breaks the readers normalise away (a lone ``\r`` becomes a newline when a file is read).
_BREAKS = "\n\r"


def _marked(text: str) -> bool:
    """Whether U+FEFF begins ``text`` or one of its lines: readers drop it there as a byte-order mark."""
    return text.startswith("\ufeff") or "\n\ufeff" in text or "\r\ufeff" in text


def _check_field(writer: str, value: str, forbidden: str, what: str, *, space: bool = False) -> str:
    """``value`` unless it holds a character of ``forbidden`` — or, with ``space``, any whitespace (the
    CoNLL reader splits at spaces and tabs and strips every kind at a line's ends) or nothing at all — or
    begins a line with U+FEFF."""
    if not isinstance(value, str):
        raise TypeError(f"{writer}: each {what} must be a str, got {type(value).__name__} {value!r}")
    bad = [c for c in forbidden if c in value] or ([c for c in value if c.isspace()] if space else [])
    if bad:
        raise ValueError(f"{writer}: {what} {value[:40]!r} contains {bad[0]!r}, which the format cannot hold")
    if _marked(value):
        raise ValueError(f"{writer}: {what} {value[:40]!r} begins with U+FEFF, or a line of it does, which readers "
                         f"drop as a byte-order mark (of files joined with cat)")
    if space and not value:
        raise ValueError(f"write_conll: an empty {what}, which the format cannot hold")
    return value


def _check_text(writer: str, value: str, forbidden: str, what: str) -> str:
    """A text field of a line- or CSV-based format: ``_check_field``, and not empty or wrapped in
    whitespace (the readers strip each field and refuse an empty one)."""
    _check_field(writer, value, forbidden, what)
    if not value.strip():
        raise ValueError(f"{writer}: an empty {what}, which its reader refuses")
    if value != value.strip():
        raise ValueError(f"{writer}: {what} {value[:40]!r} begins or ends with whitespace, which its reader strips")
    return value


def _some(writer: str, items, what: str) -> None:
    if len(items) == 0:
        raise ValueError(f"{writer}: no {what}s to write (its reader refuses a file without any)")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8; a ``\\r`` would read back as a newline (the reader normalises line ends), so it
    is refused."""
    if "\r" in text:
        raise ValueError("write_text: the text contains '\\r', which read_text normalises to a newline")
    return _write(path, text)


def _write(path: str | os.PathLike, text: str, writer: str = "write_text") -> Path:
    if not text.strip():
        raise ValueError(f"{writer}: nothing to write (its reader refuses an empty file)")
    if _marked(text):
        raise ValueError(f"{writer}: the data begins with U+FEFF, or a line of it does, which readers drop as a "
                         f"byte-order mark (of files joined with cat)")
    p = _target(path)
    p.write_text(text, encoding="utf-8")
    return p


def write_labelled(path: str | os.PathLike, examples: Sequence[tuple[str, str]], *, delimiter: str | None = None) -> Path:
    """A ``text,label`` file with a header: for ``.tsv``, tab-separated without quoting (fields may
    not hold tabs or newlines), else CSV with quoting where needed."""
    p = _target(path)
    sep = delimiter or ("\t" if p.suffix.lower() in (".tsv", ".tab") else ",")
    if sep == "\t":
        check = lambda s: _check_text("write_labelled", s, "\t" + _BREAKS, "field")  # noqa: E731
        _some("write_labelled", examples, "example")
        return _write(p, "text\tlabel\n" + "".join(f"{check(t)}\t{check(y)}\n" for t, y in examples), "write_labelled")
    _some("write_labelled", examples, "example")
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(["text", "label"])
        w.writerows((_check_text("write_labelled", t, "\r", "text"), _check_text("write_labelled", y, _BREAKS, "label"))
                    for t, y in examples)
    return p


def write_conll(path: str | os.PathLike, sentences: Sequence[tuple[Sequence[str], Sequence[str]]]) -> Path:
    """``TOKEN<TAB>TAG`` lines, a blank line after each sentence."""
    lines = []
    for tokens, tags in sentences:
        if len(tokens) != len(tags):
            raise ValueError(f"write_conll: expected one tag per token ({len(tokens)}), got {len(tags)}")
        if not tokens:
            raise ValueError("write_conll: an empty sentence, which the format cannot hold (it reads as none)")
        for tok, tag in zip(tokens, tags):
            tok = _check_field("write_conll", tok, "", "token", space=True)
            tag = _check_field("write_conll", tag, "", "tag", space=True)
            if tok == "-DOCSTART-":
                raise ValueError("write_conll: the token '-DOCSTART-' marks a document break to CoNLL readers")
            lines.append(f"{tok}\t{tag}\n")
        lines.append("\n")
    return _write(path, "".join(lines), "write_conll")


def write_parallel(path: str | os.PathLike, pairs: Sequence[tuple[str, str]]) -> Path:
    """``SOURCE<TAB>TARGET`` lines."""
    check = lambda s: _check_text("write_parallel", s, "\t" + _BREAKS, "sentence")  # noqa: E731
    return _write(path, "".join(f"{check(s)}\t{check(t)}\n" for s, t in pairs), "write_parallel")


def write_series(path: str | os.PathLike, series: Series) -> Path:
    """A CSV with a header of column names and one row per time step (``repr`` floats, so values
    read back exactly as float32)."""
    if not isinstance(series, Series):
        raise TypeError(f"write_series: series must be a Series(values (T, C), columns) (rnnkit.data.Series), "
                        f"got {type(series).__name__}")
    names = [str(c) for c in series.columns]
    values = series.values
    if values.dim() != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"write_series: expected values (T, C) with T, C >= 1 (read_series refuses an empty "
                         f"series), got shape {tuple(values.shape)}")
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        t, j = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"write_series: column {names[j]!r}, step {t}: {float(values[t, j])} is not a finite "
                         f"number (read_series refuses it, or leaves out a column of nothing else)")
    for n in names:
        _check_field("write_series", n, _BREAKS, "column name")
    default = [str(j + 1) for j in range(len(names))]  # what read_series calls a headerless file's columns
    p = _target(path)
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if names != default:  # a headerless file reads back with exactly those names
            unreadable = [n for n in names if not n.strip() or n != n.strip() or _number(n) is not None]
            if unreadable:
                raise ValueError(f"write_series: column name {unreadable[0]!r} would not read back as a header "
                                 f"(read_series takes a first row with a number for data, and strips names); "
                                 f"rename the column")
            w.writerow(names)
        w.writerows([repr(float(x)) for x in row] for row in series.values.tolist())
    return p
