"""Generated tasks: the classic tests of memory in recurrent networks. Pure functions of their seed
(``random.Random(seed)`` / ``torch.Generator().manual_seed(seed)``), identical on every machine.
"""
from __future__ import annotations

import math
import random

import torch

from ..readers import Series


def adding_problem(n: int = 2000, length: int = 50, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015).

    Returns ``inputs (n, length, 2)`` float32 and ``targets (n,)`` float32. Channel 0 holds values
    drawn uniformly from [0, 1); channel 1 marks two positions with 1, one in each half of the
    sequence; the target is the sum of the two marked values. Predicting 1.0 always gives a mean
    squared error of about 0.167 — the baseline a model must beat.
    """
    if length < 2:
        raise ValueError(f"adding_problem: length must be >= 2, got {length}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=g)  # (n, T)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    marks = torch.zeros(n, length)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]  # (n,)
    return torch.stack([values, marks], dim=-1), targets


BLANK, GO = "_", ":"


def copy_memory(n: int = 1000, delay: int = 20, *, memory: int = 5, symbols: int = 8, seed: int = 0,
                distinct: bool = True) -> list[tuple[list[str], list[str]]]:
    """Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016), as a tagging task.

    Each example has ``memory + delay + memory`` steps: ``memory`` random digits from ``1..symbols``,
    ``delay - 1`` blanks ``_``, a go marker ``:``, then ``memory`` more blanks. The tags are ``_`` at
    every step except the last ``memory``, whose tags are the digits to recall, in order. Tagging all
    steps ``_`` scores ``(memory + delay) / (2 * memory + delay)`` token accuracy; only memory beats it.
    The examples are distinct (at most ``symbols ** memory`` of them), so a held-out part never repeats
    a training example; ``distinct=False`` draws each independently (``n`` of them however few the
    possible ones: a stream of training batches, as the diagnostics' experiments use).
    """
    if delay < 1 or memory < 1 or not 1 <= symbols <= 9:
        raise ValueError(f"copy_memory: need delay >= 1, memory >= 1, 1 <= symbols <= 9; got {delay}, {memory}, {symbols}")
    rng = random.Random(seed)
    if distinct:
        seen: dict[tuple[str, ...], None] = {}
        while len(seen) < min(n, symbols**memory):
            seen.setdefault(tuple(str(rng.randint(1, symbols)) for _ in range(memory)))
        drawn = list(seen)
    else:
        drawn = [tuple(str(rng.randint(1, symbols)) for _ in range(memory)) for _ in range(n)]
    return [(list(d) + [BLANK] * (delay - 1) + [GO] + [BLANK] * memory, [BLANK] * (memory + delay) + list(d))
            for d in drawn]


def reversal(n: int = 2000, *, min_len: int = 3, max_len: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    """Reverse a string of digits, as translation: ``("3 1 4 1", "1 4 1 3")``. Digits are separated
    by spaces so word and character tokenizers both work. Pairs are distinct (at most ``n``: fewer
    if the lengths allow fewer distinct strings). Copying the source is the baseline to beat."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"reversal: need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = random.Random(seed)
    possible = sum(10**k for k in range(min_len, max_len + 1))
    seen: dict[str, None] = {}
    while len(seen) < min(n, possible):
        k = rng.randint(min_len, max_len)
        seen.setdefault(" ".join(str(rng.randrange(10)) for _ in range(k)))
    return [(s, " ".join(reversed(s.split()))) for s in seen]


def noisy_sine(length: int = 2000, *, period: float = 50.0, noise: float = 0.1, seed: int = 0) -> Series:
    """``sin(2 pi t / period) + noise * e_t``, ``e_t`` standard normal, for ``t = 0..length-1``:
    a ``Series`` with one column ``"sine"``, values (length, 1) float32."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)
    x = torch.sin(2 * math.pi * t / period) + noise * torch.randn(length, generator=g, dtype=torch.float64)
    return Series(x.to(torch.float32).unsqueeze(1), ["sine"])
