"""Input checks shared by the layers and cells: every message names the module and says expected vs got."""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ..engine.precision import autocast_dtype


class InputError(ValueError, RuntimeError):
    """An input or state of the wrong shape, rank or device: a ``ValueError``, and also the ``RuntimeError``
    torch.nn raises for it, so code written to catch torch.nn's catches rnnkit's."""


class InputDtypeError(TypeError, ValueError, RuntimeError):
    """An input or state in another dtype than the parameters: a ``TypeError``, and also the ``ValueError``
    (layers) or ``RuntimeError`` (cells) torch.nn raises for it."""


def check_int(owner: str, name: str, value, least: int) -> int:
    """``value`` as a Python int, at least ``least``: any integer type (NumPy's too, as from a config read by
    NumPy or pandas) but not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < least:
        what = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ValueError(f"{owner}: {name} must be {what}, got {value}")
    return value


def check_positive_int(owner: str, name: str, value) -> int:
    return check_int(owner, name, value, 1)


def is_number(value) -> bool:
    """A real number of any type (NumPy scalars included) that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_flag(value) -> bool:
    """True or False: a bool, NumPy's bool, or a number equal to 0 or 1 (not a tensor or array, whose truth
    is elementwise)."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    return isinstance(value, bool) or numpy_bool or (isinstance(value, numbers.Real) and value in (0, 1))


def check_probability(owner: str, name: str, p) -> float:
    """``p`` as a float in [0, 1) (a dropout-like rate; NumPy scalars too)."""
    if not is_number(p) or not 0 <= p < 1:
        raise ValueError(f"{owner}: {name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def check_tensor(owner: str, name: str, t, dtype: torch.dtype, device: torch.device) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{owner}: {name} must be a Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise InputDtypeError(f"{owner}: {name} must have dtype {dtype} (the module's parameters), got {t.dtype}")
    if t.device != device:
        raise InputError(f"{owner}: {name} is on {t.device}, but the module's parameters are on {device}")


def autocast_input(t, dtype: torch.dtype):
    """Inside ``torch.autocast``, a tensor in the autocast's lower precision (the output of a Linear there,
    say) is accepted, as torch.nn accepts it, and cast to the parameters' ``dtype``; anything else comes
    back unchanged for ``check_tensor`` to judge."""
    if isinstance(t, Tensor) and t.dtype != dtype and t.dtype == autocast_dtype(t.device):
        return t.to(dtype)
    return t


def autocast_arrival(x: Tensor, hx) -> tuple[torch.dtype, ...] | None:
    """Inside ``torch.autocast``: the dtypes the input and the given states arrived in, ``(x, h[, c])`` (none
    for ``hx=None``), before ``autocast_input`` casts them, so that a stack run by torch's kernel gets them as
    torch.nn would (its output's dtype follows them: a GRU on CPU keeps a bfloat16 input's precision, where
    autocast casts an LSTM's or a vanilla RNN's anyway); None outside an autocast region."""
    if not isinstance(x, Tensor) or autocast_dtype(x.device) is None:
        return None
    states = [] if hx is None else list(hx) if isinstance(hx, (tuple, list)) else [hx]
    return (x.dtype, *(s.dtype if isinstance(s, Tensor) else x.dtype for s in states))


def check_shape(owner: str, name: str, t: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise InputError(f"{owner}: {name} has shape {tuple(t.shape)}, expected {tuple(expected)}")


def check_lengths(owner: str, lengths, batch: int, steps: int) -> Tensor:
    """Validate per-sequence lengths; returns them as an int64 CPU tensor of shape (B,)."""
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths, device="cpu")
        except (TypeError, ValueError) as e:
            raise TypeError(f"{owner}: lengths must be a 1-D tensor or list of ints, got {type(lengths).__name__}") from e
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"{owner}: lengths must hold integers, got dtype {lengths.dtype}")
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{owner}: lengths must have shape ({batch},) — one per sequence — got {tuple(lengths.shape)}")
    lengths = lengths.to("cpu", torch.int64)
    if batch and int(lengths.min()) < 1:
        bad = int(torch.argmin(lengths))
        raise ValueError(f"{owner}: every length must be >= 1, got {int(lengths[bad])} for sequence {bad}")
    if batch and int(lengths.max()) > steps:
        bad = int(torch.argmax(lengths))
        raise ValueError(
            f"{owner}: length {int(lengths[bad])} of sequence {bad} is longer than the input's {steps} time steps"
        )
    return lengths
