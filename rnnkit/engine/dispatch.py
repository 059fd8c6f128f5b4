"""The one place that chooses how a recurrent stack runs.

``engine="auto"`` picks, by measurement on CPU (2 cores, torch 2.13; see benchmarks/bench_layers.py):

- CUDA tensors → ``native`` (cuDNN fuses every cell kind and the packed case).
- options torch's kernels lack (dropout kinds, recurrent dropout, zoneout, layer norm) → ``fused``.
- variable lengths → ``fused``: torch's packed path leaves oneDNN and runs several times slower,
  while the fused engine does work proportional to the sum of the lengths.
- inference (no gradient needed) → ``native``: torch's C++ time loop has the same GEMMs and less
  per-step overhead than any loop written in Python.
- training a float32 LSTM → ``native``: oneDNN runs near the GEMM peak, which torch ops cannot beat.
- training a GRU, a vanilla RNN, or anything in float64 → ``fused``: torch has no fused CPU kernel there,
  and its autograd graph of per-step ops is slower than the hand-written backward pass.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import fused, native, reference
from .stack import run_stack
from .types import LayerWeights, Options, State

ENGINES = ("auto", "reference", "fused", "native")

_LAYER_FNS = {"reference": reference.run_layer, "fused": fused.run_layer}


def choose_engine(engine: str, mode: str, x: Tensor, lengths: Tensor | None, opts: Options = Options(),
                  layer_norm: bool = False, needs_grad: bool = True) -> str:
    """Resolve ``"auto"`` to a concrete engine name for this input."""
    if engine != "auto":
        return engine
    if opts.needs_rnnkit_engine or layer_norm:
        return "fused"
    if x.is_cuda:
        return "native"
    if lengths is not None:
        return "fused"
    if not needs_grad:
        return "native"
    if mode == "lstm" and x.dtype == torch.float32:
        return "native"
    return "fused"


def run(
    engine: str,
    mode: str,
    x: Tensor,
    hx: State,
    weights: Sequence[LayerWeights],
    lengths: Tensor | None,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
    opts: Options = Options(),
) -> tuple[Tensor, State]:
    """Run a whole stack: ``x`` (T, B, I) padded time-major, ``hx`` stacked (L·D, B, ·) states."""
    states = hx if isinstance(hx, tuple) else (hx,)
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, *states, *(p for w in weights for p in w if p is not None)))
    name = choose_engine(engine, mode, x, lengths, opts, weights[0].layer_norm, needs_grad)
    args = (mode, x, hx, weights, lengths, num_layers, bidirectional, dropout, training, opts)
    if name == "native":
        return native.run_stack(*args)
    return run_stack(_LAYER_FNS[name], *args)
