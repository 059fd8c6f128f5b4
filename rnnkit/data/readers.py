"""Readers for the text-based file formats, one per task. Each returns plain Python structures (or a
tensor for numbers) and raises :class:`~rnnkit.data.errors.DataError` — ``PATH:LINE: problem
(expected …, got …)`` — for anything it cannot use. Missing, empty and non-UTF-8 files are caught
once, in :func:`~rnnkit.data.errors.read_text_file`.

==================  =========================================  ======================================
task                reader                                     returns
==================  =========================================  ======================================
language model      ``read_text(path)``                        ``str``
classification      ``read_labelled(path)``                    ``list[(text, label)]``
tagging             ``read_conll(path)``                       ``list[(tokens, tags)]``
translation         ``read_parallel(src[, tgt])``              ``list[(source, target)]``
forecasting         ``read_series(path)``                      ``Series(values (T, C) float32, columns)``
==================  =========================================  ======================================
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Collection, NamedTuple, Sequence

import torch

from .errors import DataError, read_text_file

PathLike = str | os.PathLike


def read_text(path: PathLike) -> str:
    """The whole file as one string, for a language model (line ends normalised to ``\\n``)."""
    return read_text_file(path)


def _delimiter_for(path: Path, delimiter: str | None) -> str:
    """The documented rule: ``.tsv`` / ``.tab`` files are tab-separated, anything else comma-separated."""
    if delimiter is not None:
        return delimiter
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _rows(path: Path, text: str, delimiter: str, *, empty_cells: bool = False):
    """``(line_number, fields)`` for every non-blank record; the number is the record's first line.
    ``empty_cells``: every record, also a record of empty cells (``,`` or ``""``: missing values, as pandas
    writes NaN) and a blank line (fields ``[]``), which are nothing for readers of text but a time step
    for a series.

    Comma- (or other-) separated files follow CSV quoting, so a quoted field may hold the delimiter,
    quotes and newlines. Tab-separated files have no quoting — a ``"`` is an ordinary character, as
    in most TSV corpora — so a field cannot hold a tab or a newline. Quoting is strict: a stray quote
    (``"the food was "great" really``, or an opening quote that never closes and would swallow the lines
    after it into one field) is an error naming the line where that record starts, not a silently merged
    or altered example.
    """
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    if csv.field_size_limit() < len(text):  # a long document is one field (the csv module's default: 128 KiB)
        csv.field_size_limit(min(len(text), 2**31 - 1))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting, strict=True)
    start = 1
    try:
        for fields in reader:
            if empty_cells or any(f.strip() for f in fields):
                yield start, fields
            start = reader.line_num + 1
    except csv.Error as e:
        where = ("" if reader.line_num <= start else
                 f" (the record starts on line {start} and runs to line {reader.line_num})")
        raise DataError(f"malformed CSV: {e}{where}; a field that holds a quote must be quoted "
                        f"whole, each quote inside it doubled (\"\")", path, start) from None


def _describe(sep: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon"}.get(sep, repr(sep))


def read_labelled(
    path: PathLike, *, text_column: str = "text", label_column: str = "label", delimiter: str | None = None,
    known_labels: Collection[str] = (),
) -> list[tuple[str, str]]:
    """``(text, label)`` pairs from a CSV (``.tsv``: tab-separated) file, for classification.

    Header rule: the first row is a header if one of its cells is ``text_column`` or ``label_column``
    (case and surrounding spaces ignored). A header must name the label column; the text column is
    the one named ``text_column`` or, in a two-column file, the other one. Extra columns are ignored.
    Without a header every row must have exactly two fields, text then label. Blank lines are skipped;
    an empty text or label is an error. A first row that looks like a header with other names — its
    label occurs on no other row while every other label occurs at least twice, as ``review,sentiment``
    above rows labelled ``pos``/``neg`` — is an error at line 1 rather than an extra example and class,
    unless its label is one of ``known_labels`` (a model's classes, when the file is to be scored by it).
    """
    p = Path(path)
    sep = _delimiter_for(p, delimiter)
    rows = list(_rows(p, read_text_file(p), sep))
    if not rows:
        raise DataError("no rows", p)
    line, first = rows[0]
    names = [c.strip().lower() for c in first]
    if text_column.lower() in names or label_column.lower() in names:
        if label_column.lower() not in names:
            raise DataError(f"no '{label_column}' column (expected a header with '{text_column}' and '{label_column}', got {first})", p, line)
        for name in {text_column.lower(), label_column.lower()}:
            if names.count(name) > 1:
                raise DataError(f"the header names {name!r} {names.count(name)} times ({sep.join(first)!r}); which "
                                f"column to read would be a guess: rename the others", p, line)
        li = names.index(label_column.lower())
        if text_column.lower() in names:
            ti = names.index(text_column.lower())
        elif len(names) == 2:
            ti = 1 - li
        else:
            raise DataError(f"no '{text_column}' column (expected a header with '{text_column}' and '{label_column}', got {first})", p, line)
        width, body = len(first), rows[1:]
        for n, fields in body:  # files joined with their headers (``cat a.csv b.csv``): not an example and class
            if [c.strip().lower() for c in fields] == names:
                raise DataError(f"repeats the header row {sep.join(first)!r} of line {line} (files joined with "
                                f"their headers?); remove it", p, n)
    else:
        ti, li, width, body = 0, 1, 2, rows
    out = _labelled_rows(p, sep, body, ti, li, width)
    if body is rows and out[0][1] not in known_labels:
        _reject_unnamed_header(p, line, first, sep, [label for _, label in out], text_column, label_column)
    return out


def _labelled_rows(p: Path, sep: str, body, ti: int, li: int, width: int) -> list[tuple[str, str]]:
    """``(text, label)`` per row of ``body``, checking the column count and that neither is empty."""
    out = []
    for line, fields in body:
        if len(fields) != width:
            what = f"{width} {_describe(sep)}-separated columns" + (" (text, label)" if width == 2 else "")
            hint = ("; the row holds tabs, and only .tsv/.tab files are read as tab-separated: rename the file"
                    if sep != "\t" and any("\t" in f for f in fields) else "")
            raise DataError(f"expected {what}, got {len(fields)}: {sep.join(fields)[:60]!r}{hint}", p, line)
        text, label = fields[ti].strip(), fields[li].strip()
        if not label:
            raise DataError("empty label (expected a class name)", p, line)
        if "\n" in label:  # (predict writes a label per line: one that breaks one shifts the rest)
            raise DataError(f"the label {label!r} holds a line break (expected a class name on one line)", p, line)
        if not text:
            raise DataError("empty text", p, line)
        out.append((text, label))
    if not out:
        raise DataError("header only, no examples", p)
    return out


def _reject_unnamed_header(p: Path, line: int, first: list[str], sep: str, labels: list[str],
                           text_column: str, label_column: str) -> None:
    """A first row of other column names (``review,sentiment``) would become an example and a class
    of its own. Its telltale: its label (``labels[0]``) occurs on no other row, while every other label
    occurs at least twice. Such a row is refused with a :class:`DataError` at its line."""
    counts: dict[str, int] = {}
    for label in labels[1:]:
        counts[label] = counts.get(label, 0) + 1
    if not counts or labels[0] in counts or min(counts.values()) < 2:
        return
    import shlex

    raise DataError(
        f"the first row looks like a header, not an example: its label {labels[0]!r} occurs on no other row, "
        f"while every other label occurs at least twice (expected a header {text_column + sep + label_column!r} "
        f"or none, got {sep.join(first)!r}); rename the columns to {text_column} and {label_column} (or, to train, "
        f"pass --text_column {shlex.quote(first[0].strip())} --label_column {shlex.quote(first[1].strip())})",
        p, line,
    )


#: What separates the columns of a CoNLL file: ASCII spaces and tabs (``str.split()`` also splits at a no-break
#: space, cutting a token that holds one).
_CONLL_SEPARATOR = re.compile("[ \t\v\f]+")


def conll_fields(line: str) -> list[str]:
    """A CoNLL line's fields (or a sentence's words, as tagging's ``predict`` reads them): split at ASCII spaces
    and tabs only, so a no-break space stays inside its token ("New\u00a0York"); any whitespace at the ends is
    dropped, and a blank line has none."""
    line = line.strip()
    return _CONLL_SEPARATOR.split(line) if line else []


def read_conll(
    path: PathLike, *, token_column: int = 0, tag_column: int = -1, columns: int | None = None
) -> list[tuple[list[str], list[str]]]:
    """Sentences ``(tokens, tags)`` from a CoNLL-style column file, for tagging.

    One token per line, columns separated by spaces or tabs (only those: a no-break space or another Unicode
    space stays inside its token, "New\u00a0York"), a blank line between sentences; lines
    ``-DOCSTART-`` are skipped, and so are comment lines before a sentence's first token, as in CoNLL-U
    (``# sent_id = 1``, ``# newdoc``): a first field ``#`` on a line that is not a token line's width with a tag
    the other token lines use. A line ``# O`` there is the token ``#`` with its tag, and ``#tag`` is always a
    token. Every token line must have the same number of columns: ``columns``,
    or else as many as the first token line (at least two). Tokens come from ``token_column``
    (default the first), tags from ``tag_column`` (default the last).
    """
    p = Path(path)
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = None
    lines = read_text_file(p).split("\n")
    # what a token line looks like, from the lines that are no "#" line: its width and the tags it uses
    plain = [f for f in map(conll_fields, lines) if f and f[0] not in ("#", "-DOCSTART-")]
    width = columns or (len(plain[0]) if plain else None)
    tags_used = {f[tag_column] for f in plain if len(f) == width}
    for n, raw in enumerate(lines, start=1):
        fields = conll_fields(raw)  # (a line of no-break spaces is blank)
        token_hash = len(fields) == width and fields[tag_column] in tags_used  # the token "#" with a file's tag
        if fields and fields[0] == "#" and not tokens and not token_hash:
            continue  # a comment (CoNLL-U: "# text = …")
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if columns is None:
            if len(fields) < 2:
                raise DataError(f"expected at least 2 columns (token and tag), got {len(fields)}: {raw.strip()!r}", p, n)
            columns, first_line = len(fields), n
        if len(fields) != columns:
            as_on = f" as on line {first_line}" if first_line else ""
            raise DataError(f"expected {columns} columns{as_on}, got {len(fields)}: {raw.strip()!r}", p, n)
        tokens.append(fields[token_column])
        tags.append(fields[tag_column])
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise DataError("no sentences", p)
    return sentences


def _lines(path: Path) -> list[str]:
    lines = read_text_file(path).split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines  # a final newline ends the last line


#: First lines of a one-file parallel corpus that name its columns (``read_parallel``).
_PARALLEL_HEADERS = {("source", "target"), ("src", "tgt"), ("input", "output")}


def read_parallel(
    source: PathLike, target: PathLike | None = None, *, delimiter: str = "\t"
) -> list[tuple[str, str]]:
    """``(source, target)`` sentence pairs, for translation: either two files aligned line by line
    (``read_parallel("train.de", "train.en")``) or one file with two ``delimiter``-separated columns
    (default tab). Lines blank on both sides are skipped; a blank on one side only is an error, as
    are files of unequal line counts. In the one-file form a first line that names the two columns —
    ``source``/``target``, ``src``/``tgt`` or ``input``/``output`` (case ignored), as a table written
    with a header has it — is a header, not a pair."""
    sp = Path(source)
    if target is not None:
        tp = Path(target)
        src, tgt = _lines(sp), _lines(tp)
        if len(src) != len(tgt):
            raise DataError(
                f"expected as many lines as {tp} ({len(tgt)}), got {len(src)}; the two files must be aligned line by line", sp
            )
        pairs = [(n, s, t) for n, (s, t) in enumerate(zip(src, tgt), start=1)]
        paths = (sp, tp)
    else:
        pairs, header = [], None
        for n, line in enumerate(_lines(sp), start=1):
            if not line.strip():
                continue
            fields = line.split(delimiter)
            names = tuple(f.strip().lower() for f in fields)
            if not pairs and header is None and names in _PARALLEL_HEADERS:
                header = (n, names)
                continue
            if header is not None and names == header[1]:
                raise DataError(f"repeats the header line {line.strip()!r} of line {header[0]} (files joined with "
                                f"their headers?); remove it", sp, n)
            if len(fields) != 2:
                raise DataError(
                    f"expected 2 {_describe(delimiter)}-separated columns (source, target), got {len(fields)}: {line[:60]!r}", sp, n
                )
            pairs.append((n, fields[0], fields[1]))
        paths = (sp, sp)
    out = []
    for n, s, t in pairs:
        s, t = s.strip(), t.strip()
        if not s and not t:
            continue
        if not s or not t:
            side = 0 if not s else 1
            raise DataError(f"empty {('source', 'target')[side]} sentence (expected text on both sides)", paths[side], n)
        out.append((s, t))
    if not out:
        raise DataError("no sentence pairs", sp)
    return out


class Series(NamedTuple):
    """A multivariate series: ``values`` (T, C) float32, one row per time step; ``columns`` the C names."""

    values: torch.Tensor
    columns: list[str]


#: Cells float() reads that are no measurement: a column of nothing else is not a series.
_NOT_VALUES = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(,\d{3})+(\.\d*)?")  # (not 0,125: a leading zero is a decimal comma)
#: A decimal comma, with or without dots between thousands: 12,5 or 1.234,5.
_DECIMAL_COMMA = re.compile(r"[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+")
#: The smallest magnitude float32 rounds to infinity (halfway between its largest value and 2**128): a series is
#: kept in float32, and "3.4028235e+38", how float32's largest value prints, must still read.
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103


def _people_number(cell: str) -> str | None:
    """What makes ``cell`` a number written for people rather than for this reader, or None."""
    if _THOUSANDS.fullmatch(cell):
        return "a number with thousands separators, which this reader does not take; write it without them (1200)"
    if _DECIMAL_COMMA.fullmatch(cell):
        return "a number with a decimal comma, which this reader does not take; write a decimal point (12.5)"
    return None


def _refuse_thousands_separators(p: Path, name: str, cells: list[tuple[int, str]]) -> None:
    """A column skipped as text whose cells are mostly numbers with thousands separators or a decimal comma is
    a series written for people: an error, not a series silently left out."""
    filled = [(line, c.strip()) for line, c in cells if c.strip()]
    hits = [(line, c) for line, c in filled if _people_number(c)]
    if filled and len(hits) * 2 >= len(filled):
        # a column where any cell can only be a decimal comma (12,5) is one of decimal commas: its 1,250 is too
        decimal = [(line, c) for line, c in hits if not _THOUSANDS.fullmatch(c)]
        line, cell = (decimal or hits)[0]
        raise DataError(f"column {name!r}: {cell!r} is {_people_number(cell)}, or leave the column out with "
                        f"--columns", p, line)


def _blank_line(fields: list[str]) -> bool:
    """A record of ``_rows(empty_cells=True)`` that is a blank line (nothing, or spaces), not a row of empty
    cells (``,`` or ``""``)."""
    return len(fields) <= 1 and fields != [""] and not "".join(fields).strip()


def read_series(
    path: PathLike, *, columns: Sequence[str | int] | None = None, delimiter: str | None = None,
    header: bool | None = None,
) -> Series:
    """Numeric columns of a CSV (``.tsv``: tab-separated) file, for forecasting.

    Header rule (``header=None``): the first row is a header if none of its cells is a number; otherwise
    columns are named ``"1"``, ``"2"``, … . A header that names columns by numbers (years, say) cannot be
    told from a row of values: say ``header=True`` (``False``: the first row is values whatever it holds).

    ``columns`` picks columns by name or 0-based index (a number that a header names a column is that
    name); by default every
    column that holds a number anywhere is used (so a date or id column of text is skipped, and a
    numeric column is not lost to a blank or mistyped first value), except a column whose header is
    empty: the row numbers ``pandas.DataFrame.to_csv`` writes first (pick it by index to use it). A
    column of numbers written with thousands separators (``"1,200"``) is an error rather than a text
    column skipped. In a used column, a cell that is empty, text, NaN or infinite is an error naming
    line and column — also in a row of empty cells (``,``; pandas writes NaN in a one-column file as
    ``""``), and in a one-column file a blank line between values (how a spreadsheet writes its empty
    cell): each is a missing time step, which a series cannot skip. Blank lines in a file of several columns
    (a missing row there is ``,``), blank lines before the first row and rows of empty cells at the end
    (spreadsheets export them) are left out.
    """
    p = Path(path)
    sep = _delimiter_for(p, delimiter)
    rows = list(_rows(p, read_text_file(p), sep, empty_cells=True))
    while rows and not any(f.strip() for f in rows[-1][1]):
        rows.pop()
    while rows and _blank_line(rows[0][1]):
        rows.pop(0)  # (a first row of empty cells is not skipped: a missing value, or a header)
    if not rows:
        raise DataError("no values: every line is blank or holds only empty cells", p)
    line0, first = rows[0]
    header = all(_number(c) is None for c in first) if header is None else header
    if header and not "".join(first).strip():
        raise DataError("the first row holds only empty cells: a header without names, or missing first values? "
                        "name the columns, or write the values", p, line0)
    names = [c.strip() for c in first] if header else [str(j + 1) for j in range(len(first))]
    body = rows[1:] if header else rows
    if not body:
        raise DataError("header only, no values", p)
    if columns is None:
        numeric = [False] * len(names)
        for _, fields in body:
            for j, cell in enumerate(fields[: len(names)]):
                if not numeric[j] and _number(cell) is not None and cell.strip().lower() not in _NOT_VALUES:
                    numeric[j] = True
            if all(numeric):
                break
        unnamed = [j for j in range(len(names)) if header and not names[j]]
        use = [j for j in range(len(names)) if numeric[j] and j not in unnamed]
        for j in range(len(names)):
            if not numeric[j]:
                _refuse_thousands_separators(p, names[j], [(line, f[j]) for line, f in body if j < len(f)])
        if not use and unnamed:
            raise DataError("no numeric column but the unnamed first one (row numbers, as pandas writes them); "
                            "pick it with --columns 0 if it is a series", p, line0)
        if not use:
            raise DataError(f"no numeric column (expected numbers, got {body[0][1]})", p, body[0][0])
    else:
        use = []
        for c in columns:
            if isinstance(c, int) and not isinstance(c, bool) and header and str(c) in names:
                use.append(names.index(str(c)))  # (a header's name that is a number: the name, not an index)
            elif isinstance(c, int) and not isinstance(c, bool):
                if not -len(names) <= c < len(names):
                    raise DataError(f"no column {c} (the file has {len(names)})", p, line0)
                use.append(c % len(names))
            elif c in names:
                use.append(names.index(c))
            else:
                raise DataError(f"no column {c!r} (expected one of {names})", p, line0)
    twice = next((names[j] for j in use if header and names.count(names[j]) > 1), None)
    if twice is not None:  # (the series used are matched to a validation file's by name)
        raise DataError(f"the header names {twice!r} {names.count(twice)} times; rename the others", p, line0)
    values = []
    for line, fields in body:
        if _blank_line(fields):
            if len(names) > 1:
                continue  # (not a row of this table: a missing row of several columns is written ",")
            raise DataError("a blank line between values: in a one-column file that is an empty cell, a missing "
                            "time step, which a series cannot skip; write its value, or delete the line if no "
                            "step is missing", p, line)
        if len(fields) != len(names):
            raise DataError(f"expected {len(names)} {_describe(sep)}-separated columns, got {len(fields)}", p, line)
        row = []
        for j in use:
            cell = fields[j].strip()
            x = _number(cell)
            if x is None or not math.isfinite(x):
                if _people_number(cell):
                    _refuse_thousands_separators(p, names[j], [(line, cell)])
                got = "an empty cell (a missing value)" if not cell else repr(cell)
                raise DataError(f"column {names[j]!r}: expected a finite number, got {got}", p, line)
            if abs(x) >= FLOAT32_OVERFLOW:
                raise DataError(f"column {names[j]!r}: {cell} is outside float32's range (±3.4e38), in which series "
                                f"are kept; rescale the column", p, line)
            row.append(x)
        values.append(row)
    return Series(torch.tensor(values, dtype=torch.float32), [names[j] for j in use])
