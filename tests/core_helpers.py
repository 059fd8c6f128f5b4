"""Shared helpers for the core tests (imported as ``core_helpers``; ``conftest.py`` re-exports the fixtures): the cell kinds, rnnkit/torch.nn module pairs with one set of
weights, a pairwise covering of option axes, and a forward+backward that collects every gradient.

Everything runs in float64 unless a test says otherwise, so rnnkit and torch.nn must agree to
``torch.testing.assert_close``'s float64 defaults (rtol 1e-7, atol 1e-7).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit

# The tests' tensors are tiny (a few hundred elements): splitting them across threads only adds
# synchronisation, which on a shared 2-core machine made the suite 2-3x slower. One thread.
torch.set_num_threads(1)

DT = torch.float64
ENGINES = ("reference", "fused", "native", "auto")
INPUT_FORMATS = ("padded", "lengths", "packed", "unbatched")


@dataclass(frozen=True)
class Cell:
    """One recurrent cell kind as the layers see it. ``mode`` is the engine's name for it."""

    name: str
    mode: str
    kit: type
    ref: type
    kwargs: dict = field(default_factory=dict)

    @property
    def lstm(self) -> bool:
        return self.mode == "lstm"

    @property
    def proj_size(self) -> int:
        return self.kwargs.get("proj_size", 0)


CELLS = {
    c.name: c
    for c in (
        Cell("rnn_tanh", "rnn_tanh", rnnkit.RNN, nn.RNN, {"nonlinearity": "tanh"}),
        Cell("rnn_relu", "rnn_relu", rnnkit.RNN, nn.RNN, {"nonlinearity": "relu"}),
        Cell("lstm", "lstm", rnnkit.LSTM, nn.LSTM),
        Cell("lstm_proj", "lstm", rnnkit.LSTM, nn.LSTM, {"proj_size": 2}),
        Cell("gru", "gru", rnnkit.GRU, nn.GRU),
    )
}
#: The engine's modes, each with the projection size to test it at (the LSTM both without and with).
MODES_PROJ = [("rnn_tanh", 0), ("rnn_relu", 0), ("lstm", 0), ("lstm", 2), ("gru", 0)]
MODE_IDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]


def make_pair(cell: Cell, input_size: int, hidden_size: int, engine: str = "auto", dtype=DT, **options):
    """An rnnkit layer and its torch.nn namesake with the same options and the same weights
    (torch's initialisation, loaded into rnnkit through ``load_state_dict``)."""
    ref = cell.ref(input_size, hidden_size, dtype=dtype, **cell.kwargs, **options)
    kit = cell.kit(input_size, hidden_size, dtype=dtype, engine=engine, **cell.kwargs, **options)
    kit.load_state_dict(ref.state_dict())
    return kit, ref


def covering(axes: dict[str, Sequence[Any]], strength: int = 2) -> list[dict[str, Any]]:
    """A covering array: rows in which every combination of values of every ``strength`` axes appears
    at least once (so every value of every axis appears too). Greedy and deterministic: each row is
    the candidate of the full product that covers the most combinations not yet covered."""
    names = list(axes)
    rows_all = [dict(zip(names, vals)) for vals in itertools.product(*axes.values())]

    def combos(row):
        return {tuple((a, row[a]) for a in sub) for sub in itertools.combinations(names, strength)}

    todo = set().union(*(combos(r) for r in rows_all))
    chosen = []
    while todo:
        best = max(rows_all, key=lambda r: len(combos(r) & todo))
        chosen.append(best)
        todo -= combos(best)
    return chosen


def random(*shape, seed: int, dtype=DT, scale: float = 1.0, device=None) -> Tensor:
    """Normal draws from a private CPU generator, moved to ``device`` if given: the same numbers on every device."""
    g = torch.Generator().manual_seed(seed)
    draws = torch.randn(*shape, generator=g, dtype=dtype, device="cpu")
    return (draws if device is None else draws.to(device)) * scale


def states_list(state) -> list[Tensor]:
    """h — or (h, c) — as a list."""
    return list(state) if isinstance(state, (tuple, list)) else [state]


def loss_of(tensors: Sequence[Tensor], seed: int = 123) -> Tensor:
    """A fixed random linear function of every element, so each output gets a distinct upstream
    gradient (a plain sum would hide errors that permute or mix elements)."""
    return sum((t * random(*t.shape, seed=seed + k, dtype=t.dtype, device=t.device)).sum()
               for k, t in enumerate(tensors))


def grads_of(loss: Tensor, leaves: Sequence[Tensor]) -> list[Tensor]:
    """d loss / d leaf for every leaf; raises if a leaf is unused (every parameter must get a gradient)."""
    return list(torch.autograd.grad(loss, list(leaves)))


def assert_all_close(actual: Sequence[Tensor], expected: Sequence[Tensor], names: Sequence[str], **tol) -> None:
    assert len(actual) == len(expected) == len(names)
    for a, e, n in zip(actual, expected, names):
        torch.testing.assert_close(a, e, msg=lambda m, n=n: f"{n}: {m}", **tol)


@pytest.fixture
def assert_error():
    """``assert_error(exc, fn, *fragments)``: ``fn()`` raises ``exc`` whose message contains every
    fragment (the module's name, the expected and the actual value)."""

    def check(exc: type, fn, *fragments: str) -> str:
        with pytest.raises(exc) as info:
            fn()
        msg = str(info.value)
        for frag in fragments:
            assert frag in msg, f"{frag!r} not in error message {msg!r}"
        return msg

    return check


__all__ = [
    "CELLS", "DT", "ENGINES", "INPUT_FORMATS", "MODES_PROJ", "MODE_IDS", "Cell", "PackedSequence",
    "assert_all_close", "covering", "grads_of", "loss_of", "make_pair", "pack_padded_sequence",
    "pad_packed_sequence", "random", "states_list",
]
