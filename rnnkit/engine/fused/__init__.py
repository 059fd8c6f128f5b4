"""The fused engine: one ``torch.autograd.Function`` per cell with backpropagation through time written
out by hand (``lstm.py``, ``gru.py``, ``rnn.py``), over the packed row layout of ``layout.py``.

``run_layer`` has the signature of ``rnnkit.engine.reference.run_layer`` and is tested against it.
"""
from __future__ import annotations

from torch import Tensor

from ..types import LayerWeights, Noise, State
from .gru import gru_layer
from .layout import Layout
from .lstm import lstm_layer
from .rnn import rnn_layer


def run_layer(
    mode: str,
    x: Tensor,
    state: State,
    weights: LayerWeights,
    lengths: Tensor | None = None,
    reverse: bool = False,
    noise: Noise | None = None,
) -> tuple[Tensor, State]:
    """Same contract as the reference engine: ``x`` (T, B, I) → ``y`` (T, B, H_out), final state."""
    noise = noise or Noise()
    T, B, _ = x.shape
    layout = Layout(T, B, lengths, reverse, x.device)
    X = layout.pack(x)  # (N, I)
    if mode == "lstm":
        h0, c0 = state
        Y, h_n, c_n = lstm_layer(X, layout.sort(h0), layout.sort(c0), weights, layout, noise)
        return layout.unpack(Y), (layout.unsort(h_n), layout.unsort(c_n))
    if mode == "gru":
        Y, h_n = gru_layer(X, layout.sort(state), weights, layout, noise)
    else:
        Y, h_n = rnn_layer(X, layout.sort(state), weights, layout, noise, relu=mode == "rnn_relu")
    return layout.unpack(Y), layout.unsort(h_n)
