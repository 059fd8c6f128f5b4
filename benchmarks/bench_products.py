#!/usr/bin/env python
"""One step's recurrent product, ``torch.addmm`` against oneDNN on a matrix reordered once and MKL's packed
GEMM on a matrix packed once; with ``--linear``, the products of all steps at once, MKL's GEMM against
oneDNN's inner product.

The fused loops multiply each step's rows by the same matrix (W_hhᵀ forward, W_hh backward).
``rnnkit/engine/fused/products.py`` sends that product through MKL's packed GEMM (``packed_gemm.py``,
where it loaded) when the matrix has at least ``PACKED_MIN_ELEMENTS`` values, else through oneDNN when it
has at least ``ONEDNN_MIN_ELEMENTS``; this prints, for rows × matrix shapes of the layers in
``bench_layers.py`` and some around them (other batch sizes and widths, to place the rules' lines), the
time of ``out.addmm_(x, M)``, of ``StepProduct.acc`` forced onto oneDNN and onto MKL's packed GEMM,
alternating in one process, their ratios to ``addmm_`` (> 1: faster), and the path the rules pick.

``--linear``: the input projection X W_ihᵀ + b of a whole sequence and its gradient ∂L/∂GX · W_ih, as
``torch.addmm`` / ``torch.mm`` into a block made once against ``products.linear`` forced onto oneDNN
(which returns a fresh tensor), with the choice its rule (reduction K ≥ 256, output ≤ 2K wide) makes.
(The gradient rows time a contiguous weight with a bias; the engine's ∂L/∂X is ``linear(dGX, W.t())``,
no bias, oneDNN reading the transposed view.)

    .venv/bin/python benchmarks/bench_products.py
    .venv/bin/python benchmarks/bench_products.py --threads 1
    .venv/bin/python benchmarks/bench_products.py --linear
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import markdown_table, time_alternating  # noqa: E402
from rnnkit.engine.fused import packed_gemm, products  # noqa: E402

#: (rows, K, N): rows × K times K × N; a hidden size H with G gates gives (B, H, G·H) forward and (B, G·H, H)
#: backward.
SHAPES = [(32, 128, 512), (32, 512, 128), (128, 64, 192), (16, 256, 768), (32, 256, 768), (32, 256, 1024),
          (64, 512, 512), (32, 384, 1152), (64, 512, 1536), (64, 1536, 512), (64, 512, 2048), (8, 512, 1536),
          (128, 512, 1536)]
#: (rows, K, M) for ``--linear``: (N, K) times (K, M); the input projection of T·B = N rows is (N, I, G·H) and
#: its gradient (N, G·H, I).
LINEAR_SHAPES = [(3200, 128, 128), (3200, 128, 384), (3200, 384, 128), (3200, 128, 512), (3200, 512, 128),
                 (6400, 64, 192), (6400, 192, 64), (6400, 64, 256), (6400, 256, 64), (3200, 256, 768),
                 (3200, 768, 256), (6400, 512, 512), (6400, 512, 1536), (6400, 1536, 512), (6400, 512, 2048),
                 (6400, 2048, 512), (3200, 1024, 1024), (64, 512, 512)]


def linear_rows(args) -> list[list[str]]:
    rows = []
    for n, k, m in LINEAR_SHAPES[:3] if args.quick else LINEAR_SHAPES:
        g = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(n, k, generator=g), torch.randn(m, k, generator=g), torch.randn(m, generator=g)
        out = torch.empty(n, m)
        timing = time_alternating({"mkl": lambda: torch.addmm(b, x, w.t(), out=out),
                                   "onednn": lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")},
                                  baseline="mkl", repeats=args.repeats, min_time=0.002 if args.quick else 0.05)
        chosen = "oneDNN" if products.linear_takes_onednn(x, w) else "MKL"
        rows.append([f"{n}×{k} · {k}×{m}", f"{timing.medians['mkl'] * 1e6:.0f}",
                     f"{timing.medians['onednn'] * 1e6:.0f}", f"{timing.ratios['onednn']:.2f}×", chosen])
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="three shapes, short samples (a smoke test)")
    ap.add_argument("--linear", action="store_true", help="the products of all steps at once instead")
    args = ap.parse_args(argv)
    if not products.ONEDNN:
        sys.exit("bench_products: this torch has no oneDNN; nothing to compare")
    torch.set_num_threads(args.threads)
    if args.linear:
        print(f"threads {args.threads}, linear: oneDNN for K ≥ {products.LINEAR_MIN_REDUCTION}, "
              f"M ≤ {products.LINEAR_MAX_WIDTH_RATIO}·K")
        print(markdown_table(["product", "MKL µs", "oneDNN µs", "oneDNN speed-up", "rule picks"], linear_rows(args)))
        return
    shapes = SHAPES[:3] if args.quick else SHAPES
    mkl = packed_gemm.available(torch.float32)
    rows = []
    for b, k, n in shapes:
        g = torch.Generator().manual_seed(0)
        m = torch.randn(n, k, generator=g).t()  # (K, N) as the loops pass W_hhᵀ
        x, out = torch.randn(b, k, generator=g), torch.zeros(b, n)
        candidates = {"addmm": lambda: out.addmm_(x, m)}
        for path, (onednn_min, packed_min) in (("onednn", (0, 10**12)), ("mkl", (10**12, 0)))[: 2 if mkl else 1]:
            saved = products.ONEDNN_MIN_ELEMENTS, products.PACKED_MIN_ELEMENTS
            products.ONEDNN_MIN_ELEMENTS, products.PACKED_MIN_ELEMENTS = onednn_min, packed_min
            forced = products.StepProduct(m, b, 100)  # in a loop of 100 steps
            products.ONEDNN_MIN_ELEMENTS, products.PACKED_MIN_ELEMENTS = saved
            candidates[path] = lambda forced=forced: forced.acc(out, x)
        timing = time_alternating(candidates, baseline="addmm", repeats=args.repeats,
                                  min_time=0.002 if args.quick else 0.05)
        chosen = products.StepProduct(m, b, 100)
        pick = "MKL packed" if chosen.mkl is not None else "oneDNN" if chosen.packed is not None else "addmm"
        row = [f"{b}×{k} · {k}×{n}", f"{timing.medians['addmm'] * 1e6:.0f}", f"{timing.medians['onednn'] * 1e6:.0f}",
               f"{timing.ratios['onednn']:.2f}×"]
        if mkl:
            row += [f"{timing.medians['mkl'] * 1e6:.0f}", f"{timing.ratios['mkl']:.2f}×"]
        rows.append(row + [pick])
    print(f"threads {args.threads}, PACKED_MIN_ELEMENTS {products.PACKED_MIN_ELEMENTS:,}"
          f"{'' if mkl else ' (MKL packed GEMM: not in this torch)'}, ONEDNN_MIN_ELEMENTS {products.ONEDNN_MIN_ELEMENTS:,}")
    header = ["product", "addmm µs", "oneDNN µs", "oneDNN speed-up"] + (["MKL packed µs", "MKL packed speed-up"]
                                                                      if mkl else []) + ["rule picks"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
