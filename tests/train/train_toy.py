"""A tiny character-level language model task for the trainer tests, built straight on rnnkit.LSTM
(so the trainer is tested without the data and model packages)."""
from __future__ import annotations

import math

import torch
from torch import nn

import rnnkit
from rnnkit.train import StepContext, TrainTask


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 5, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = rnnkit.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        y, state = self.rnn(self.embed(x), state)  # (B, T, H)
        return self.out(y), state


class StreamTask(TrainTask):
    """Batches of a periodic stream 0,1,2,3,4,0,1,… with noise; B rows, chunks of ``bptt`` steps."""

    main_metric = "loss"

    def __init__(self, batch: int = 4, bptt: int = 6, chunks: int = 5, seed: int = 0, poison_at: int | None = None):
        g = torch.Generator().manual_seed(seed)
        n = batch * (bptt * chunks + 1)
        stream = torch.arange(n) % 5
        flip = torch.rand(n, generator=g) < 0.1
        stream[flip] = torch.randint(0, 5, (int(flip.sum()),), generator=g)
        self.rows = stream.view(batch, -1)  # (B, L)
        self.bptt, self.chunks = bptt, chunks
        self.poison_at = poison_at
        self.eval_calls = 0

    def train_batches(self, epoch: int):
        return [{"x": self.rows[:, i * self.bptt:(i + 1) * self.bptt],
                 "y": self.rows[:, i * self.bptt + 1:(i + 1) * self.bptt + 1]} for i in range(self.chunks)]

    def loss(self, model, batch, carry, ctx: StepContext):
        logits, state = model(batch["x"], carry)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch["y"].flatten(), reduction="sum")
        if self.poison_at is not None and ctx.step >= self.poison_at:
            loss = loss * math.nan
        return loss, batch["y"].numel(), state

    def evaluate(self, model):
        self.eval_calls += 1
        total, n = 0.0, 0
        carry = None
        device = next(model.parameters()).device  # (the trainer moves training batches; evaluation is ours)
        for b in self.train_batches(0):
            b = {key: t.to(device) for key, t in b.items()}
            s, k, carry = self.loss(model, b, carry, StepContext(0, 0))
            total, n = total + float(s), n + k
        return {"loss": total / n}
