#!/usr/bin/env python
"""The fused engine's compiled element-wise step against the same loop on torch's operators.

``rnnkit/engine/fused/step_kernels.c`` does the element-wise work of a fused RNN, LSTM or GRU step in one
call; without it (``step_kernels.disabled()``, as on CUDA or with ``RNNKIT_STEP_KERNELS=0``) the loop
runs torch's operators. This times one training step (forward and backward, as ``bench_variants.py``)
of bench_variants.py's fused layers (two layers, its configurations) both ways, alternating in one
process — the LSTM and GRU plain and layer-normalised, the vanilla RNN (tanh) plain and bidirectional
(whose layers run both directions in one pass on the compiled path) — and prints the times, the speed-up
(> 1: the compiled step is faster), and each layer-normalised step's time over the plain step's on the
same path — issue 3's measure. Ratios are medians of per-round ratios.

    .venv/bin/python benchmarks/bench_step_kernels.py
    .venv/bin/python benchmarks/bench_step_kernels.py --threads 1 --timer cpu     # on a busy machine
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench_variants import CELLS, CONFIGS, LAYERS, training_step  # noqa: E402
from common import markdown_table, time_alternating  # noqa: E402
import rnnkit  # noqa: E402
from rnnkit.engine.fused import step_kernels  # noqa: E402

#: the layers timed: the LSTM's and GRU's, and the vanilla RNN's (which has no layer norm)
VARIANTS = {"gated": {"plain": {}, "layer_norm": {"layer_norm": True}},
            "rnn": {"plain": {}, "bidirectional": {"bidirectional": True}}}


def with_kernels(step, on: bool):
    if on:
        return step

    def off():
        with step_kernels.disabled():
            step()

    return off


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="small,large", help=f"comma list of {tuple(CONFIGS)}")
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    ap.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or this process's CPU time — steadier on a busy machine with --threads 1")
    args = ap.parse_args(argv)
    if not step_kernels.available():
        sys.exit(f"bench_step_kernels: the compiled step kernels are not here ({step_kernels.WHY_NOT})")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for config in args.configs.split(","):
        cfg = CONFIGS[config]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(cfg.T, cfg.B, cfg.H, generator=g).requires_grad_()
        R = torch.randn(cfg.T, cfg.B, cfg.H, generator=g)
        for cell in args.cells.split(","):
            steps = {}
            variants = VARIANTS["rnn" if cell == "rnn" else "gated"]
            for name, options in variants.items():
                kit = (rnnkit.RNN if cell == "rnn" else CELLS[cell][0])(cfg.H, cfg.H, num_layers=LAYERS, engine="fused",
                                                                       **options)
                out = R if not options.get("bidirectional") else torch.cat([R, R.flip(0)], 2)
                step = training_step(lambda v, m=kit: m(v)[0], x, out, list(kit.parameters()))
                for on in (True, False):
                    steps[f"{name} {'compiled' if on else 'torch ops'}"] = with_kernels(step, on)
            t = time_alternating(steps, repeats=args.repeats, min_time=args.min_time,
                                 timer=time.process_time if args.timer == "cpu" else time.perf_counter)

            def ratio(num: str, den: str) -> float:
                return statistics.median(a / b for a, b in zip(t.samples[num], t.samples[den]))

            for layer in variants:
                ops, comp = f"{layer} torch ops", f"{layer} compiled"
                ln = layer == "layer_norm"
                rows.append([cfg.label, cell.upper(), layer, f"{t.medians[ops] * 1e3:.1f}",
                             f"{t.medians[comp] * 1e3:.1f}", f"**{ratio(ops, comp):.2f}×**",
                             f"{ratio(ops, 'plain torch ops'):.2f}×" if ln else "",
                             f"{ratio(comp, 'plain compiled'):.2f}×" if ln else ""])
    print(f"threads {torch.get_num_threads()}, {args.timer} time; training step of a {LAYERS}-layer fused layer")
    print(markdown_table(["config", "cell", "layer", "torch ops ms", "compiled ms", "speed-up",
                          "÷ plain, torch ops", "÷ plain, compiled"], rows))


if __name__ == "__main__":
    main()
