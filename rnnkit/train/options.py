"""Settings from the command line (``--key value``) and from TOML files, checked against the config
dataclasses before anything runs.

A run has three groups of settings, each a dataclass: ``train`` (``TrainConfig``), ``model`` (the
model's config, less the fields the data decides such as ``vocab_size``) and ``data`` (the task's
data options). A key names a field of exactly one group (``--hidden_size 64``, ``--lr 3e-3``,
``--bptt 100``; dashes and underscores are the same). A TOML file may set keys at the top level or
in ``[train]``, ``[model]`` and ``[data]`` tables. Values from the command line are parsed by the
field's type: ``int``, ``float``, ``bool`` (true/false/yes/no/1/0), ``str``, a choice (``Literal``),
``X | None`` (``none``), ``tuple[int, ...]`` (``1,2,3``). A wrong name or type is an ``OptionError``
naming the key, the expected type and the value.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union


class OptionError(ValueError):
    """A bad setting: unknown key, wrong type, unreadable config file. One line."""


def _parse(text: str, hint, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if text.strip().lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, key)
            except OptionError as e:
                errors.append(str(e))
        raise OptionError(errors[0] if errors else f"--{key}: cannot parse {text!r}")
    if origin is Literal:
        if text in args:
            return text
        raise OptionError(f"--{key} must be one of {', '.join(map(str, args))}; got {text!r}")
    if origin is tuple:
        return tuple(_parse(x.strip(), args[0], key) for x in text.split(",") if x.strip())
    if hint is bool:
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise OptionError(f"--{key} must be true or false; got {text!r}")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise OptionError(f"--{key} must be {'an integer' if hint is int else 'a number'}; got {text!r}") from None
    if hint is str:
        return text
    raise OptionError(f"--{key}: unsupported option type {hint}")  # pragma: no cover


def _check(value: Any, hint, key: str) -> Any:
    """A TOML value against a field type (ints are fine floats; lists become tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(value, str) and hint is not str and origin not in (Literal,) and not (
            origin in (Union, types.UnionType) and str in args):
        return _parse(value, hint, key)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is Literal and value not in args:
        raise OptionError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}")
    plain = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in plain and not (isinstance(value, hint) and (hint is bool or not isinstance(value, bool))):
        raise OptionError(f"{key} must be {plain[hint]}; got {value!r}")  # (here, not later without the file)
    return value


class Settings:
    """The field tables of the groups; ``set(key, value)`` routes a key to its group with a typed value."""

    def __init__(self, groups: dict[str, type], exclude: dict[str, set[str]] | None = None) -> None:
        self.fields: dict[str, tuple[str, Any]] = {}
        exclude = exclude or {}
        for group, cls in groups.items():
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if f.name in exclude.get(group, set()):
                    continue
                self.fields.setdefault(f.name, (group, hints[f.name]))
        self.values: dict[str, dict[str, Any]] = {g: {} for g in groups}

    def _lookup(self, key: str) -> tuple[str, str, Any]:
        name = key.replace("-", "_")
        if name not in self.fields:
            close = [k for k in self.fields if name in k or k in name]
            hint = f" (did you mean {', '.join('--' + c for c in close[:3])}?)" if close else ""
            raise OptionError(f"unknown option --{key}{hint}")
        group, hint = self.fields[name]
        return name, group, hint

    def set_text(self, key: str, text: str) -> None:
        name, group, hint = self._lookup(key)
        self.values[group][name] = _parse(text, hint, name)

    def set_value(self, key: str, value: Any, group: str | None = None) -> None:
        name, found, hint = self._lookup(key)
        if group is not None and group != found:
            raise OptionError(f"option {name!r} belongs in [{found}], not [{group}]")
        self.values[found][name] = _check(value, hint, name)

    def parse_pairs(self, argv: list[str]) -> None:
        """``--key value`` and ``--key=value`` pairs (what argparse did not recognise)."""
        i = 0
        while i < len(argv):
            arg = argv[i]
            if not arg.startswith("--") or arg == "--":
                raise OptionError(f"unexpected argument {arg!r} (options are --key value)")
            if "=" in arg:
                key, text = arg[2:].split("=", 1)
                i += 1
            else:
                key = arg[2:]
                self._lookup(key)  # an unknown key is reported before a missing value
                if i + 1 >= len(argv) or (argv[i + 1].startswith("--") and not _is_number(argv[i + 1])):
                    raise OptionError(f"option --{key} needs a value")
                text = argv[i + 1]
                i += 2
            self.set_text(key, text)

    def load_toml(self, path: str | Path) -> None:
        """Keys at the top level or in [train], [model], [data]; a key set in two places is an error (which
        one should win?), and every error names the file."""
        data = read_toml(path)
        where: dict[str, str] = {}
        try:
            for key, value in data.items():
                if isinstance(value, dict) and key in self.values:
                    items, place = value.items(), f"[{key}]"
                elif isinstance(value, dict):
                    raise OptionError(f"unknown table [{key}] (expected [train], [model] or [data])")
                else:
                    items, place = [(key, value)], "the top level"
                for k, v in items:
                    name = k.replace("-", "_")
                    if name in where:
                        raise OptionError(f"{k} is set twice, at {where[name]} and in {place}; keep one")
                    where[name] = place
                    self.set_value(k, v, group=key if place != "the top level" else None)
        except OptionError as e:
            raise OptionError(f"{path}: {e}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_toml(path: str | Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    p = Path(path)
    try:
        if p.is_dir():
            raise OptionError(f"{p}: is a folder; --config takes a TOML file")
        if not p.is_file():
            raise OptionError(f"{p}: config file not found")
    except OSError as e:  # (a name too long, a folder without permission)
        raise OptionError(f"{p}: config file cannot be read ({e.strerror or e})") from None
    try:  # (utf-8-sig: a byte-order mark, as Windows editors save one, is not TOML's but no error either)
        return tomllib.loads(p.read_bytes().decode("utf-8-sig"))
    except OSError as e:
        raise OptionError(f"{p}: config file cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise OptionError(f"{p}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise OptionError(f"{p}: invalid TOML ({e})") from None


def build(cls: type, values: dict[str, Any], **fixed) -> Any:
    """``cls(**fixed, **values)``; a constructor's TypeError/ValueError becomes an OptionError."""
    try:
        return cls(**fixed, **values)
    except (TypeError, ValueError) as e:
        raise OptionError(str(e)) from None


def check_out_dir(out: Path, flag: str = "--out") -> None:
    """An output folder: one that exists, or a path where one can be made — checked before any work."""
    if out.exists() and not out.is_dir():
        raise OptionError(f"{flag} {out} is a file; give a folder")
    _check_writable_parent(out, flag, "folder")


def check_out_file(out: Path, flag: str = "--out") -> None:
    """An output file: not a folder, in a folder that exists or can be made — checked before any work."""
    if out.is_dir():
        raise OptionError(f"{flag} {out} is a folder; give a file name")
    _check_writable_parent(out.parent, flag, "file", given=out)


def _check_writable_parent(path: Path, flag: str, what: str, given: Path | None = None) -> None:
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OptionError(f"{flag} {given or path}: {parent} is a file, so no {what} can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(f"{flag} {given or path}: no permission to write in {parent}")
