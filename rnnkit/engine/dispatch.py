"""The one place that chooses how a recurrent stack runs.

``engine="auto"`` picks, by measurement on CPU (2 cores, torch 2.13; see benchmarks/bench_layers.py):

- CUDA tensors → ``native`` (cuDNN fuses every cell kind and the packed case).
- float32 LSTM with no per-sequence lengths → ``native``: torch.nn.LSTM runs oneDNN there, near the
  GEMM peak, which a kernel built from torch ops cannot beat.
- options torch's kernels lack (dropout kinds, recurrent dropout, zoneout, layer norm) → ``fused``.
- everything else → ``fused``: GRU and vanilla RNN (torch has no fused CPU kernel for them), variable
  lengths (torch's packed path leaves oneDNN and is several times slower), float64.
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
                  layer_norm: bool = False) -> str:
    """Resolve ``"auto"`` to a concrete engine name for this input."""
    if engine != "auto":
        return engine
    if opts.needs_rnnkit_engine or layer_norm:
        return "fused"
    if x.is_cuda:
        return "native"
    if mode == "lstm" and x.dtype == torch.float32 and lengths is None:
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
    name = choose_engine(engine, mode, x, lengths, opts, weights[0].layer_norm)
    args = (mode, x, hx, weights, lengths, num_layers, bidirectional, dropout, training, opts)
    if name == "native":
        return native.run_stack(*args)
    return run_stack(_LAYER_FNS[name], *args)
