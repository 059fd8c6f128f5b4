"""The fused engine: one ``torch.autograd.Function`` per cell with backpropagation through time written
out by hand (``lstm.py``, ``gru.py``, ``rnn.py``), over the packed row layout of ``layout.py``; each step's
recurrent matrix product is made by ``products.py`` (oneDNN on a matrix reordered once, where that pays).

``run_layer`` has the signature of ``rnnkit.engine.reference.run_layer`` and is tested against it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..compiling import eager_under_compile
from ..types import LayerWeights, Noise, State
from .gru import gru_layer
from .layout import Layout
from .lstm import lstm_layer
from .rnn import bidirectional_applies, rnn_bidirectional_layer, rnn_layer


def _run(mode: str, X: Tensor, state: State, weights: LayerWeights, layout: Layout, noise: Noise,
         native_prefix: bool = False):
    """Packed rows (N, I) in processing order → (Y (N, H_out), final state in batch order).
    ``native_prefix``: see ``lstm_layer`` (LSTM only; ``dispatch`` decides)."""
    if mode == "lstm":
        h0, c0 = state
        Y, h_n, c_n = lstm_layer(X, layout.sort(h0), layout.sort(c0), weights, layout, noise, native_prefix)
        return Y, (layout.unsort(h_n), layout.unsort(c_n))
    if mode == "gru":
        Y, h_n = gru_layer(X, layout.sort(state), weights, layout, noise)
    else:
        Y, h_n = rnn_layer(X, layout.sort(state), weights, layout, noise, relu=mode == "rnn_relu")
    return Y, layout.unsort(h_n)


@eager_under_compile("the fused engine")
def run_layer(
    mode: str,
    x: Tensor,
    state: State,
    weights: LayerWeights,
    lengths: Tensor | None = None,
    reverse: bool = False,
    noise: Noise | None = None,
    native_prefix: bool = False,
) -> tuple[Tensor, State]:
    """Same contract as the reference engine: ``x`` (T, B, I) → ``y`` (T, B, H_out), final state."""
    T, B, _ = x.shape
    layout = Layout(T, B, lengths, reverse, x.device)
    Y, final = _run(mode, layout.pack(x), state, weights, layout, noise or Noise(), native_prefix)
    return layout.unpack(Y), final


@eager_under_compile("the fused engine")
def run_bidirectional(mode: str, x: Tensor, states: Sequence[State], weights: Sequence[LayerWeights],
                      lengths: Tensor | None, noises: Sequence[Noise]) -> tuple[Tensor, list[State]] | None:
    """Both directions of one layer at once, for ``stack.run_stack``: ``x`` (T, B, I) → (y (T, B, 2H), the
    two final states), or None where the per-direction path must run. Vanilla RNN without lengths or
    noise, where the compiled step runs (``rnn.bidirectional_applies``)."""
    if mode not in ("rnn_tanh", "rnn_relu") or lengths is not None or not bidirectional_applies(x, weights[0], noises):
        return None
    y, h_f, h_r = rnn_bidirectional_layer(x, *states, *weights, relu=mode == "rnn_relu")
    return y, [h_f, h_r]


@eager_under_compile("the fused engine")
def run_stack_packed(mode: str, data: Tensor, batch_sizes: Tensor, sorted_indices: Tensor | None, hx: State,
                     weights: Sequence[LayerWeights], num_layers: int, bidirectional: bool,
                     native_prefix: bool = False) -> tuple[Tensor, State]:
    """A whole stack on a ``PackedSequence``'s rows, which are already this engine's layout: no padding,
    no unpacking, no re-packing. ``data`` (N, I) → (N, D·H_out) and final states (L·D, B, ·) in batch
    order. For the plain layer (no dropout between layers, no variant options): ``dispatch`` decides."""
    D = 2 if bidirectional else 1
    layouts = [Layout.for_packed(batch_sizes, sorted_indices, d == 1, data.device) for d in range(D)]
    lstm = mode == "lstm"
    finals: list[State] = []
    inp = data
    for layer in range(num_layers):
        ys = []
        for d, layout in enumerate(layouts):
            k = layer * D + d
            state = (hx[0][k], hx[1][k]) if lstm else hx[k]
            Y, final = _run(mode, layout.pack(inp), state, weights[k], layout, Noise(), native_prefix)
            ys.append(layout.unpack(Y))
            finals.append(final)
        inp = ys[0] if D == 1 else torch.cat(ys, dim=1)
    if lstm:
        return inp, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
    return inp, torch.stack(finals)
