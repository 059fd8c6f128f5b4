"""The data layer's errors, and the one place that opens a user's text file.

Every problem with a user's data is a :class:`DataError` (a ``ValueError``) whose message is one
line of the form ``PATH:LINE: what is wrong (expected X, got Y)`` — the same shape compilers use,
so editors can jump to the line. The CLI prints it as is and exits with status 2.
"""
from __future__ import annotations

import contextlib
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
    """``path`` as a ``Path`` if it names an existing regular file, else a :class:`DataError` (also for a path
    the system cannot look at: a name too long, a folder without permission)."""
    p = Path(path)
    with named_if_unreadable(p):
        if not p.exists():
            raise DataError("no such file", p)
        if p.is_dir():
            raise DataError("is a directory, expected a file", p)
    return p


@contextlib.contextmanager
def named_if_unreadable(path: Path):
    """Python's OSError inside (no permission, a name too long, …) as a :class:`DataError` naming ``path`` and
    the reason."""
    try:
        yield
    except OSError as e:
        raise DataError(f"cannot be read ({e.strerror or e})", path) from None


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes (``check_file`` first); one that cannot be opened or read is a :class:`DataError`."""
    p = check_file(path)
    with named_if_unreadable(p):
        return p.read_bytes()


def check_readable(path: str | os.PathLike) -> Path:
    """``check_file``, and the file opened once: one that cannot be is a :class:`DataError` naming the reason."""
    p = check_file(path)
    with named_if_unreadable(p), p.open("rb"):
        pass
    return p


def line_and_column(data: bytes, pos: int) -> tuple[int, int]:
    """The 1-based line and byte column of ``data[pos]``, lines ending at ``\\n``, ``\\r\\n`` or a lone ``\\r``
    as the readers split them (a file saved with old Mac line ends is one line to a count of ``\\n`` alone)."""
    before = data[:pos]
    line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
    start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
    return line, pos - start + 1


def not_utf8(data: bytes, e: UnicodeDecodeError) -> str:
    """Why ``data`` did not decode, in words; a gzip-compressed file says so."""
    if data[:2] == b"\x1f\x8b":
        return "looks gzip-compressed (it starts with 1f 8b); decompress it first (gunzip FILE)"
    column = line_and_column(data, e.start)[1]
    return f"bytes that are not UTF-8 at byte {column} of the line ({data[e.start:e.end].hex(' ')}); save the file as UTF-8"


def normalise_text(text: str) -> str:
    """Line ends made ``\\n`` and byte-order marks dropped: the text's, and any at the start of a line (files
    joined with ``cat`` keep each one's mark). (Unicode's NFC is the tokenizers' and the tagger's to apply: a
    model's saved state says whether it was trained with it.)"""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub("^\ufeff", "", text, flags=re.MULTILINE) if "\ufeff" in text else text


def read_text_file(path: str | os.PathLike, *, allow_blank: bool = False) -> str:
    """The whole of a UTF-8 text file, with checks that give one-line errors.

    Missing file, a directory, an empty file (or one holding only whitespace, unless ``allow_blank``)
    and bytes that are not UTF-8 raise :class:`DataError`; for bad bytes the message names the line and
    column and shows the offending bytes. UTF-8 byte-order marks are dropped (the file's, and any at the
    start of a line: files joined with ``cat``) and line ends are normalised to ``\\n``.
    """
    p = Path(path)
    data = read_bytes(p)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(not_utf8(data, e), p, line_and_column(data, e.start)[0]) from None
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
