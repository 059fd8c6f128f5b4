"""Helpers for the model tests: a single-thread fixture, a minimal training loop, and a task shared by
the classifier and the feed-forward baseline.

The training tests use small models, for which a second intra-op thread buys nothing and, on a shared
machine, costs a lot: with two busy cores OpenMP's waiting threads made one Adam step of a tiny GRU
classifier 10–100× slower (1 s instead of 10 ms, measured). ``one_thread`` restores the setting after.
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fit() -> Callable:
    """``fit(model, data, steps, lr=1e-2, batch=32, clip=None, seed=0)``: Adam for ``steps`` steps, then
    eval mode; returns the last loss. ``data`` is a tuple of tensors with one row per example — each
    step takes ``batch`` random rows and minimises ``model.loss(*rows)`` — or a callable ``step → loss``."""

    def run(model, data, steps: int, lr: float = 1e-2, batch: int = 32, clip: float | None = None, seed: int = 0):
        g = torch.Generator().manual_seed(seed)

        def loss_at(step):
            if callable(data):
                return data(step)
            rows = torch.randint(0, len(data[0]), (batch,), generator=g)
            return model.loss(*(t[rows] for t in data))

        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for step in range(steps):
            loss = loss_at(step)
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        model.eval()
        return float(loss.detach())

    return run


def _contains_pattern(n: int, generator: torch.Generator, vocab: int = 4, min_len: int = 6, max_len: int = 14):
    """Random token strings of random lengths (padded with random ids); the label says whether the bigram
    (1, 2) occurs within the real steps — about half do. A bag of tokens cannot tell "1 2" from "2 1".
    Returns tokens (n, T), lengths (n,), labels (n,)."""
    tokens = torch.randint(0, vocab, (n, max_len), generator=generator)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    hit = (tokens[:, :-1] == 1) & (tokens[:, 1:] == 2) & (torch.arange(1, max_len) < lengths[:, None])
    return tokens, lengths, hit.any(1).long()


@pytest.fixture
def contains_pattern() -> Callable:
    """``contains_pattern(n, generator)`` → tokens, lengths, labels (see ``_contains_pattern``)."""
    return _contains_pattern
