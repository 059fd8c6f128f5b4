"""The two long-range tasks and the four cells the experiments compare. The data come from
``rnnkit.data.builtin`` (``adding_problem``, ``copy_memory``); here they become tensor batches.

**Adding problem** (Hochreiter & Schmidhuber 1997, as set in Le, Jaitly & Hinton 2015): each step
carries two numbers, a value drawn uniformly from [0, 1] and a marker that is 1 at exactly two steps
(one in each half of the sequence) and 0 elsewhere. The target, read after the last step, is the sum
of the two marked values. Always predicting 1 (the mean) scores MSE = Var(u₁ + u₂) = 2/12 ≈ 0.167;
the task counts as solved below a tenth of that.

**Copy memory** (Arjovsky, Shah & Bengio 2016): ``memory`` symbols drawn from 1..``alphabet``, then
T − 1 blanks (0), a delimiter (``alphabet`` + 1), and ``memory`` more blanks; the model must output
blanks everywhere except the last ``memory`` steps, where it must repeat the symbols in order. Total
length T + 2·memory; T is the delay. Scored by per-symbol accuracy on the recalled symbols (guessing
scores 1/alphabet). Arjovsky et al. use memory 10 and alphabet 8 (``COPY_LENGTH``, ``COPY_SYMBOLS``,
the defaults here); ``rnnkit experiment copy`` defaults to a smaller instance that runs in minutes.

The cells (``CELLS``): ``rnn`` tanh RNN (torch's init), ``irnn`` ReLU RNN with identity recurrence
(Le et al. 2015), ``lstm`` with forget-gate bias 1 (Jozefowicz et al. 2015), ``gru`` (torch's init).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import GRU, LSTM, RNN
from ..data.builtin.synthetic import BLANK, GO, adding_problem, copy_memory

ADDING_BASELINE_MSE = 2.0 / 12.0  # Var(u₁ + u₂), the MSE of always predicting 1
COPY_SYMBOLS = 8  # alphabet: symbols 1..8; 0 is the blank, 9 the delimiter (Arjovsky et al. 2016)
COPY_LENGTH = 10  # how many symbols to remember (Arjovsky et al. 2016)


def adding_batch(batch_size: int, T: int, seed: int = 0, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """One adding-problem batch from ``rnnkit.data``'s generator: ``x`` (B, T, 2) — value, marker —
    and ``y`` (B,) the marked sum. The same ``seed`` gives the same batch."""
    x, y = adding_problem(batch_size, T, seed=seed)
    return x.to(dtype), y.to(dtype)


def copy_batch(batch_size: int, T: int, seed: int = 0, *, memory: int = COPY_LENGTH,
               alphabet: int = COPY_SYMBOLS) -> tuple[Tensor, Tensor]:
    """One copy-memory batch from ``rnnkit.data``'s generator (``memory`` symbols from 1..``alphabet``,
    delay ``T``) as ids: input ``x`` (B, T + 2·memory) and target ``y`` (B, T + 2·memory); blank 0,
    symbols 1..alphabet, delimiter alphabet + 1. ``alphabet`` is at most 9 (the generator's digits). Rows
    are drawn independently: ``batch_size`` of them however few sequences ``alphabet ** memory`` allows
    (the task is to carry the symbols across the delay, which a sequence seen before does not spare)."""
    if T < 1:
        raise ValueError(f"rnnkit.diagnostics.copy_batch: T must be >= 1, got {T}")
    pairs = copy_memory(batch_size, T, memory=memory, symbols=alphabet, seed=seed, distinct=False)
    ids = {BLANK: 0, GO: alphabet + 1, **{str(k): k for k in range(1, alphabet + 1)}}
    x = torch.tensor([[ids[tok] for tok in tokens] for tokens, _ in pairs])
    y = torch.tensor([[ids[tag] for tag in tags] for _, tags in pairs])
    return x, y


# -- the four cells ---------------------------------------------------------------------------------
CELLS = ("rnn", "irnn", "lstm", "gru")
CELL_LABELS = {"rnn": "tanh RNN", "irnn": "IRNN", "lstm": "LSTM", "gru": "GRU"}


def make_layer(cell: str, input_size: int, hidden_size: int, *, num_layers: int = 1, batch_first: bool = True,
               engine: str = "auto", dtype=None) -> nn.Module:
    """One of ``CELLS`` as an rnnkit layer with its initialisation."""
    common = dict(num_layers=num_layers, batch_first=batch_first, engine=engine, dtype=dtype)
    if cell == "rnn":
        return RNN(input_size, hidden_size, nonlinearity="tanh", **common)
    if cell == "irnn":
        return RNN(input_size, hidden_size, nonlinearity="relu", init="identity", **common)
    if cell == "lstm":
        return LSTM(input_size, hidden_size, forget_bias=1.0, **common)
    if cell == "gru":
        return GRU(input_size, hidden_size, **common)
    raise ValueError(f"rnnkit.diagnostics: unknown cell {cell!r}; expected one of {CELLS}")


@dataclass
class TaskConfig:
    """A task model's shape. ``hidden_size`` 128 as in Le et al. (2015) for the adding problem."""

    cell: str = "lstm"
    hidden_size: int = 128
    engine: str = "auto"


class AddingModel(nn.Module):
    """Recurrent layer over (B, T, 2), a linear read-out of the last step's state → (B,)."""

    def __init__(self, cell: str, hidden_size: int = 128, engine: str = "auto", dtype=None) -> None:
        super().__init__()
        self.cell = cell
        self.rnn = make_layer(cell, 2, hidden_size, engine=engine, dtype=dtype)
        self.head = nn.Linear(hidden_size, 1, dtype=dtype)

    def readout(self, output: Tensor) -> Tensor:
        """(B, T, H) layer output → (B,) prediction."""
        return self.head(output[:, -1]).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.rnn(x)[0])


class CopyModel(nn.Module):
    """One-hot symbols (alphabet + 2 ids: blank, symbols, delimiter) → recurrent layer → per-step logits
    over the alphabet + 1 output ids (blank, symbols)."""

    def __init__(self, cell: str, hidden_size: int = 128, engine: str = "auto", dtype=None, *,
                 alphabet: int = COPY_SYMBOLS) -> None:
        super().__init__()
        self.cell = cell
        self.alphabet = alphabet
        self.n_in = alphabet + 2
        self.rnn = make_layer(cell, self.n_in, hidden_size, engine=engine, dtype=dtype)
        self.head = nn.Linear(hidden_size, alphabet + 1, dtype=dtype)

    def embed(self, ids: Tensor) -> Tensor:
        return nn.functional.one_hot(ids, self.n_in).to(self.head.weight.dtype)  # (B, T, alphabet + 2)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.rnn(self.embed(ids))[0])  # (B, T, alphabet + 1)
