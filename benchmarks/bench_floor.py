#!/usr/bin/env python
"""How fast could a training step be, if it were nothing but its matrix products?

For each dense configuration of ``bench_layers.py`` (variable lengths excluded: their per-step shapes
differ) and each cell, this times three things alternating in one process:

- ``torch.nn``: a training step of the torch.nn layer (forward, backward, input and weight gradients);
- ``rnnkit``: the same step with ``engine="auto"``;
- ``floor``: only the matrix products such a step must do, at their shapes, with nothing else — per
  layer and direction the input projection of all steps, T recurrent products forward and T backward
  (one step's gate gradients times W_hh), and three products over all steps (input gradient, input
  and recurrent weight gradients). The per-step products are made as rnnkit's fused loops make them
  (``rnnkit/engine/fused/products.py``: oneDNN on a matrix reordered once per pass where that is
  faster, ``mm`` elsewhere), and so are the input projection and the input gradient (``products.linear``:
  oneDNN's inner product where that is faster); any engine built on these products does at least this
  work.

It prints, per row, torch.nn time / floor time — the largest speed-up over torch.nn that such an engine
could reach — next to the speed-up rnnkit reaches, and floor / rnnkit time, the share of its step that
rnnkit spends in those products. (torch's oneDNN LSTM fuses its products, so its row can be under 1.)

    .venv/bin/python benchmarks/bench_floor.py
    .venv/bin/python benchmarks/bench_floor.py --configs b64_t100_h512 --cells gru,rnn --threads 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_layers import CELLS, CONFIGS, EXTRA_CONFIGS, Config, parse_list  # noqa: E402
from common import gemm_gflops, markdown_table, time_alternating, training_step  # noqa: E402

from rnnkit.engine.fused.products import StepProduct, linear  # noqa: E402


def floor_step(cfg: Config, gates: int) -> Callable[[], None]:
    """The matrix products of one training step of ``cfg``, into preallocated outputs."""
    g = torch.Generator().manual_seed(0)
    N, GH, H = cfg.T * cfg.B, gates * cfg.H, cfg.H
    calls = []
    for layer in range(cfg.layers):
        layer_in = cfg.I if layer == 0 else cfg.D * H
        for _ in range(cfg.D):
            X, w_ih, w_hh = (torch.randn(*s, generator=g) for s in ((N, layer_in), (GH, layer_in), (GH, H)))
            Y, h, dg = (torch.randn(*s, generator=g) for s in ((N, H), (cfg.B, H), (cfg.B, GH)))
            # GX also stands in for ∂L/∂GX below: random, so that it holds numbers whichever way it is computed
            GX = torch.randn(N, GH, generator=g)
            dX, dW_ih, dW_hh = (torch.empty(*s) for s in ((N, layer_in), (GH, layer_in), (GH, H)))
            gates_t, carry_t = torch.empty(cfg.B, GH), torch.empty(cfg.B, H)

            def products(X=X, w_ih=w_ih, w_hh=w_hh, Y=Y, h=h, dg=dg, GX=GX, dX=dX, dW_ih=dW_ih, dW_hh=dW_hh,
                         gates_t=gates_t, carry_t=carry_t) -> None:
                if linear(X, w_ih) is None:  # input projection, all steps
                    torch.mm(X, w_ih.t(), out=GX)
                forward = StepProduct(w_hh.t(), cfg.B, cfg.T)  # as the fused loops make it, once per pass
                for _ in range(cfg.T):
                    forward.into(gates_t, h)  # recurrent part of one step
                backward = StepProduct(w_hh, cfg.B, cfg.T)
                for _ in range(cfg.T):
                    backward.into(carry_t, dg)  # ∂L/∂h_{t-1} of one step
                if linear(GX, w_ih.t()) is None:  # the three all-steps products of the backward pass
                    torch.mm(GX, w_ih, out=dX)
                torch.mm(GX.t(), X, out=dW_ih)
                torch.mm(GX.t(), Y, out=dW_hh)

            calls.append(products)

    def step() -> None:
        for products in calls:
            products()

    return step


def main(argv: list[str] | None = None) -> int:
    dense = [c for c in CONFIGS + EXTRA_CONFIGS if not c.varlen]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", type=lambda v: parse_list(v, tuple(c.name for c in dense), "config"),
                   default=[c.name for c in CONFIGS if not c.varlen], help="comma list (default: the dense "
                   "configurations of bench_layers.py; 'tiny' for a smoke run)")
    p.add_argument("--cells", type=lambda v: parse_list(v, tuple(CELLS), "cell"), default=list(CELLS))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                   help="wall clock, or this process's CPU time (steadier with --threads 1)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.1, help="seconds each timed sample lasts at least")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    timer = time.process_time if args.timer == "cpu" else time.perf_counter
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"GEMM 1024² fp32 {gemm_gflops(timer=timer):.0f} GFLOP/s", flush=True)

    rows = []
    for cfg in (c for c in dense if c.name in args.configs):
        for cell in args.cells:
            torch_cls, rk_cls, gates, _, label = CELLS[cell]
            torch.manual_seed(0)
            ref = torch_cls(cfg.I, cfg.H, num_layers=cfg.layers, bidirectional=cfg.bidirectional)
            kit = rk_cls(cfg.I, cfg.H, num_layers=cfg.layers, bidirectional=cfg.bidirectional)
            kit.load_state_dict(ref.state_dict())
            x = torch.randn(cfg.T, cfg.B, cfg.I).requires_grad_()
            proj = torch.randn(cfg.T, cfg.B, cfg.D * cfg.H)
            t = time_alternating({"torch.nn": training_step(ref, x, proj), "rnnkit": training_step(kit, x, proj),
                                  "floor": floor_step(cfg, gates)},
                                 repeats=args.repeats, warmup=2, warmup_time=3 * args.min_time,
                                 min_time=args.min_time, timer=timer)
            rows.append([cfg.label, label, f"{1e3 * t.medians['torch.nn']:.1f}", f"{1e3 * t.medians['floor']:.1f}",
                         f"{t.ratios['floor']:.2f}×", f"{t.ratios['rnnkit']:.2f}×",
                         f"{t.medians['floor'] / t.medians['rnnkit']:.0%}"])
            print(" ".join(rows[-1]), flush=True)
    print()
    print(markdown_table(["config", "cell", "torch.nn ms", "products only ms", "ceiling (torch.nn ÷ products)",
                          "rnnkit speed-up", "products ÷ rnnkit"], rows, align="llrrrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
