"""``make demo`` (until the command line lands): an rnnkit.LSTM learns the adding problem.

Each sequence has T steps of two channels: a random number in [0, 1) and a marker that is 1 at
exactly two steps. The target is the sum of the two marked numbers (Hochreiter & Schmidhuber 1997).
Always predicting 1 gives a mean squared error of about 0.167; a model that has learned to look back
to the markers goes far below it. Prints the loss falling, then a few predictions.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import rnnkit


def adding_batch(batch: int, steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns x (B, T, 2) and the target y (B,)."""
    values = torch.rand(batch, steps, generator=generator)
    marks = torch.zeros(batch, steps)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, steps, (batch,), generator=generator)
    rows = torch.arange(batch)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    return torch.stack([values, marks], dim=2), (values * marks).sum(1)


class AddingModel(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.rnn = rnnkit.LSTM(2, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.rnn(x)  # h_n (1, B, H): the state after the last step
        return self.head(h_n[-1]).squeeze(1)  # (B,)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="sequence length T")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--iterations", type=int, default=1200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = AddingModel(args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x_test, y_test = adding_batch(1000, args.steps, gen)
    print(f"adding problem, T={args.steps}: an rnnkit.LSTM(2, {args.hidden}) learns to add the two marked numbers")
    print(f"baseline (always predict 1): test MSE {((1 - y_test) ** 2).mean():.4f}")
    start = time.perf_counter()
    for it in range(1, args.iterations + 1):
        x, y = adding_batch(args.batch, args.steps, gen)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it % 100 == 0 or it == 1:
            with torch.no_grad():
                test = nn.functional.mse_loss(model(x_test), y_test).item()
            print(f"step {it:5d}  train MSE {loss.item():.4f}  test MSE {test:.4f}  "
                  f"({time.perf_counter() - start:.1f} s)")
    with torch.no_grad():
        pred = model(x_test[:5])
    for target, guess in zip(y_test[:5].tolist(), pred.tolist()):
        print(f"  target {target:.3f}  predicted {guess:.3f}")


if __name__ == "__main__":
    main()
