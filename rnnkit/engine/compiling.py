"""How the engines meet graph capture: ``torch.jit.trace`` and ``torch.export`` record a graph to replay
(``recording``); ``torch.compile`` runs what it cannot compile right eagerly between its graphs
(``eager_under_compile``).

Run eagerly under ``torch.compile`` (a graph break there, as for torch.nn's own recurrent layers, which
Dynamo leaves alone unless ``torch._dynamo.config.allow_rnn`` is set):

- the fused engine: traced, torch 2.11 computed a zero input gradient through its hand-written backward,
  and torch 2.13 spent 319 s compiling an LSTM B32 T100 H128 into 8 graphs whose training step took 81 ms
  against 28 ms eager;
- torch's own kernels (the native engine): Inductor's lowering of ``mkldnn_rnn_layer`` fails in a float32
  LSTM's training step whose input needs no gradient ("expected Tensor() for op"), where torch.nn runs;
- the generation step kernel: Inductor cannot lower the oneDNN products it packs (``_linear_pointwise``).

The reference engine (autograd through the readable cells) is traced like any torch code, and is the one
to use with ``torch.compile(fullgraph=True)``.
"""
from __future__ import annotations

import functools
import inspect

import torch

_TAKES_REASON = "reason" in inspect.signature(torch.compiler.disable).parameters  # (torch >= 2.8)


def recording() -> bool:
    """Inside ``torch.jit.trace`` or ``torch.export``: a graph is being recorded to be replayed later.

    Export's flag is read directly: before torch 2.13, Dynamo answered ``torch.compiler.is_exporting()``
    with True under ``torch.compile`` as well (pytorch/pytorch#176347), which refused the fused engine there."""
    exporting = getattr(torch.compiler, "_is_exporting_flag", None)
    return torch.jit.is_tracing() or bool(torch.compiler.is_exporting() if exporting is None else exporting)


def eager_under_compile(what: str, *, rnn_kernel: bool = False):
    """Decorator: under ``torch.compile`` (not while exporting) the function runs eagerly; ``what`` names it
    in Dynamo's graph-break message. ``rnn_kernel``: torch's recurrent kernels, traced where the user set
    ``torch._dynamo.config.allow_rnn`` as for torch.nn's layers."""
    reason = (f"rnnkit runs {what} eagerly under torch.compile (see rnnkit/engine/compiling.py); for "
              "fullgraph=True use engine='reference'")

    def decorate(run):
        eager = torch.compiler.disable(run, reason=reason) if _TAKES_REASON else torch.compiler.disable(run)

        @functools.wraps(run)
        def entry(*args, **kwargs):
            if torch.compiler.is_compiling() and not recording() and not (rnn_kernel and _allow_rnn()):
                return eager(*args, **kwargs)
            return run(*args, **kwargs)

        return entry

    return decorate


def _allow_rnn() -> bool:
    return bool(getattr(torch._dynamo.config, "allow_rnn", False))  # (read while compiling: Dynamo is loaded)
