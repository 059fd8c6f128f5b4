"""The data layer's errors, and the one place that opens a user's text file.

Every problem with a user's data is a :class:`DataError` (a ``ValueError``) whose message is one
line of the form ``PATH:LINE: what is wrong (expected X, got Y)`` — the same shape compilers use,
so editors can jump to the line. The CLI prints it as is and exits with status 2.
"""
from __future__ import annotations

import os
import re
from pathlib import Path


class DataError(ValueError):
    """A user's data file cannot be used: missing, empty, not UTF-8, or malformed at a line.

    ``path`` and ``line`` (1-based, ``None`` when the problem is with the whole file) are kept as
    attributes so callers can report them their own way; ``str(err)`` is the one-line message.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
        super().__init__(where + message)


class MissingExtraError(ImportError):
    """An optional package is needed for a feature; the message says how to install it."""

    def __init__(self, package: str, extra: str, feature: str):
        self.package = package
        super().__init__(
            f"{feature} needs the optional package '{package}', which is not installed: "
            f"pip install 'rnnkit[{extra}]'  (or: pip install {package})"
        )


def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if it names an existing regular file, else a :class:`DataError`."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file", p)
    if p.is_dir():
        raise DataError("is a directory, expected a file", p)
    return p


def normalise_text(text: str) -> str:
    """Line ends made ``\\n`` and byte-order marks dropped: the text's, and any at the start of a line (files
    joined with ``cat`` keep each one's mark)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub("^\ufeff", "", text, flags=re.MULTILINE) if "\ufeff" in text else text


def read_text_file(path: str | os.PathLike, *, allow_blank: bool = False) -> str:
    """The whole of a UTF-8 text file, with checks that give one-line errors.

    Missing file, a directory, an empty file (or one holding only whitespace, unless ``allow_blank``)
    and bytes that are not UTF-8 raise :class:`DataError`; for bad bytes the message names the line and
    column and shows the offending bytes. UTF-8 byte-order marks are dropped (the file's, and any at the
    start of a line: files joined with ``cat``) and line ends are normalised to ``\\n``.
    """
    p = check_file(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        bad = data[e.start:e.end].hex(" ")
        raise DataError(f"bytes that are not UTF-8 at byte {column} of the line ({bad}); save the file as UTF-8", p, line) from None
    text = normalise_text(text)
    if not text.strip() and not (allow_blank and text):
        raise DataError("file is empty", p)
    return text


def require(module: str, package: str, extra: str, feature: str):
    """Import ``module`` from an optional ``package``, or raise :class:`MissingExtraError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(package, extra, feature) from None
