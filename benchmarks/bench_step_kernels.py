#!/usr/bin/env python
"""The fused engine's compiled element-wise step against the same loop on torch's operators.

``rnnkit/engine/fused/step_kernels.c`` does the element-wise work of a fused LSTM or GRU step in one
call; without it (``step_kernels.disabled()``, as on CUDA or with ``RNNKIT_STEP_KERNELS=0``) the loop
runs torch's operators. This times one training step (forward and backward, as ``bench_variants.py``)
of a fused layer both ways, alternating in one process, plain and layer-normalised, and prints the
times and the speed-up (> 1: the compiled step is faster), and each layer-normalised step's time over
the plain step's on the same path — issue 3's measure.

    .venv/bin/python benchmarks/bench_step_kernels.py
    .venv/bin/python benchmarks/bench_step_kernels.py --threads 1 --configs small
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import rnnkit  # noqa: E402
from common import markdown_table, time_alternating, training_step  # noqa: E402
from rnnkit.engine.fused import step_kernels  # noqa: E402

#: name → (B, T, H), input size = H (bench_variants.py's configurations)
CONFIGS = {"tiny": (4, 8, 16), "small": (32, 100, 128), "large": (64, 100, 512)}


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
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    args = ap.parse_args(argv)
    if not step_kernels.available():
        sys.exit(f"bench_step_kernels: the compiled step kernels are not here ({step_kernels.WHY_NOT})")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for config in args.configs.split(","):
        B, T, H = CONFIGS[config]
        for cell in args.cells.split(","):
            steps = {}
            for ln in (False, True):
                torch.manual_seed(0)
                layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[cell](H, H, engine="fused", layer_norm=ln)
                x = torch.randn(T, B, H, requires_grad=True)
                step = training_step(layer, x, torch.randn(T, B, H))
                for on in (True, False):
                    steps[ln, on] = with_kernels(step, on)
            names = {(ln, on): f"{'layer_norm' if ln else 'plain'} {'compiled' if on else 'torch ops'}"
                     for ln, on in steps}
            timing = time_alternating({names[k]: fn for k, fn in steps.items()}, baseline=names[False, False],
                                      repeats=args.repeats, min_time=args.min_time)
            t = {k: timing.medians[names[k]] for k in steps}
            # each path's speed-up: the torch-operator step's time over the compiled one's, per round
            r = timing.round_ratios
            for ln in (False, True):
                ops, comp = r[names[ln, False]], r[names[ln, True]]
                speedup = sorted(c / o for c, o in zip(comp, ops))[len(ops) // 2]
                rows.append([f"B{B} T{T} H{H}", cell.upper(), "layer_norm" if ln else "plain",
                             f"{t[ln, False] * 1e3:.1f}", f"{t[ln, True] * 1e3:.1f}", f"**{speedup:.2f}×**",
                             f"{t[True, False] / t[False, False]:.2f}×" if ln else "",
                             f"{t[True, True] / t[False, True]:.2f}×" if ln else ""])
    print(f"threads {torch.get_num_threads()}; training step, fused engine")
    print(markdown_table(["config", "cell", "layer", "torch ops ms", "compiled ms", "speed-up",
                          "÷ plain, torch ops", "÷ plain, compiled"], rows))


if __name__ == "__main__":
    main()
