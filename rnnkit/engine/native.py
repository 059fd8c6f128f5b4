"""The native engine: torch's own whole-stack kernels (oneDNN for LSTM on CPU, cuDNN on GPU).

Variable lengths go through torch's packed path, which is correct but slow on CPU; ``engine="auto"``
therefore only picks this engine where torch's kernel is the fast one (see ``dispatch.py``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .stack import drop_weights
from .types import LayerWeights, Options, State

_OPS = {"lstm": torch.lstm, "gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}


def run_stack(
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
    """Same contract as ``stack.run_stack``; raises ValueError for options torch's kernels lack."""
    unsupported = list(opts.needs_rnnkit_engine) + (["layer_norm"] if weights[0].layer_norm else [])
    if unsupported:
        raise ValueError(f"engine='native' (torch's kernels) cannot run {', '.join(unsupported)}; "
                         "use engine='fused' or 'auto'")
    op = _OPS[mode]
    weights = [drop_weights(w, opts, training) for w in weights]
    flat = [p for w in weights for p in w.torch_weights]  # torch's flat order per layer-direction
    has_biases = weights[0].b_ih is not None
    if lengths is None:
        result = op(x, hx, flat, has_biases, num_layers, dropout, training, bidirectional, False)
        return result[0], (result[1], result[2]) if mode == "lstm" else result[1]
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    order, inverse = packed.sorted_indices, packed.unsorted_indices
    hx_sorted = tuple(h.index_select(1, order) for h in hx) if mode == "lstm" else hx.index_select(1, order)
    result = op(packed.data, packed.batch_sizes, hx_sorted, flat, has_biases, num_layers, dropout, training,
                bidirectional)
    out_packed = torch.nn.utils.rnn.PackedSequence(result[0], packed.batch_sizes, order, inverse)
    y, _ = pad_packed_sequence(out_packed, total_length=x.shape[0])
    if mode == "lstm":
        return y, (result[1].index_select(1, inverse), result[2].index_select(1, inverse))
    return y, result[1].index_select(1, inverse)
