"""The native engine: torch's own whole-stack kernels (oneDNN for LSTM on CPU, cuDNN on GPU).

Variable lengths go through torch's packed path, which is correct but slow to train on CPU;
``engine="auto"`` only picks this engine where torch's kernel is the fast one (see ``dispatch.py``).
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .compiling import eager_under_compile
from .precision import autocast_dtype
from .stack import drop_weights
from .types import LayerWeights, Noise, Options, State

_OPS = {"lstm": torch.lstm, "gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}


def refuse(opts: Options, weights: Sequence[LayerWeights]) -> None:
    """A ValueError naming the options of ``opts`` and ``weights`` that torch's kernels cannot run."""
    unsupported = list(opts.needs_rnnkit_engine) + (["layer_norm"] if weights[0].layer_norm else [])
    others = [u for u in unsupported if not u.startswith("dropout_kind=")]
    unsupported = others or unsupported  # (locked masks alone run one layer at a time: name what cannot)
    if unsupported:
        raise ValueError(f"engine='native' (torch's kernels) cannot run {', '.join(unsupported)}; "
                         "use engine='fused' or 'auto'")


def runs_under_autocast(mode: str, x: Tensor) -> bool:
    """Whether torch's kernel for ``mode`` runs a padded batch ``x`` (T, B, I), as given, inside the
    ``torch.autocast`` region active for its device (True outside one). On the CPU a float32 LSTM input takes
    oneDNN's LSTM, which autocast then hands weights in its lower precision, and oneDNN's LSTM in bfloat16 or
    float16 needs AVX-512: on a CPU with AVX2 only torch.nn.LSTM itself fails there ("could not create a
    primitive descriptor for the LSTM forward propagation primitive"), while a bfloat16 input, or a packed
    batch, takes torch's other path and runs. Where it cannot, ``dispatch`` runs the stack in the parameters'
    dtype with autocast off, as every other engine runs."""
    dtype = autocast_dtype(x.device)
    if dtype is None or mode != "lstm" or x.device.type != "cpu" or x.dtype != torch.float32:
        return True
    return _cpu_lstm_runs_in(dtype)


@functools.lru_cache(maxsize=None)
def _cpu_lstm_runs_in(dtype: torch.dtype) -> bool:
    """One step of a one-unit LSTM through torch's CPU kernel under autocast to ``dtype``: does it run here?
    (Asked once per process and dtype.)"""
    x, h = torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)
    params = [torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4), torch.zeros(4)]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
            torch.lstm(x, (h, h), params, True, 1, 0.0, False, False, False)
    except RuntimeError:
        return False
    return True


def _contiguous(state: State) -> State:
    """cuDNN refuses a non-contiguous state ("rnn: hx is not contiguous"; a slice of a batch's states, say),
    where torch's CPU kernels take it: copied where needed, so both devices take what the other engines take."""
    return tuple(s.contiguous() for s in state) if isinstance(state, tuple) else state.contiguous()


@eager_under_compile("torch's recurrent kernels", rnn_kernel=True)
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
    if lengths is None:
        refuse(opts, weights)
        weights = [drop_weights(w, opts, training) for w in weights]
        flat = [p for w in weights for p in w.torch_weights]  # torch's flat order per layer-direction
        result = _OPS[mode](x, _contiguous(hx), flat, weights[0].b_ih is not None, num_layers, dropout, training,
                            bidirectional, False)
        return result[0], (result[1], result[2]) if mode == "lstm" else result[1]
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    data, state = run_stack_packed(mode, packed.data, packed.batch_sizes, packed.sorted_indices,
                                   packed.unsorted_indices, hx, weights, num_layers, bidirectional, dropout,
                                   training, opts)
    out_packed = torch.nn.utils.rnn.PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                                                   packed.unsorted_indices)
    y, _ = pad_packed_sequence(out_packed, total_length=x.shape[0])
    return y, state


@eager_under_compile("torch's recurrent kernels", rnn_kernel=True)
def run_layer(mode: str, x: Tensor, state: State, weights: LayerWeights, lengths: Tensor | None = None,
              reverse: bool = False, noise: Noise | None = None) -> tuple[Tensor, State]:
    """One layer-direction through torch's kernel, with the per-layer signature of the fused and reference
    engines, so ``stack.run_stack`` can stack it — and draw the locked dropout masks between layers exactly
    as it does for them. Padded input with no lengths and no per-step masks only (``dispatch`` decides)."""
    if lengths is not None or (noise is not None and any(n is not None for n in noise)):
        raise ValueError("native.run_layer runs whole sequences without per-step masks")
    refuse(Options(), [weights])  # (its layer norm parameters must never be passed over silently)
    if reverse:
        x = x.flip(0)
    hx = tuple(s.unsqueeze(0) for s in state) if mode == "lstm" else state.unsqueeze(0)
    result = _OPS[mode](x, _contiguous(hx), weights.torch_weights, weights.b_ih is not None, 1, 0.0,
                        torch.is_grad_enabled(), False, False)  # train: keep what backward needs
    y = result[0].flip(0) if reverse else result[0]
    return y, (result[1][0], result[2][0]) if mode == "lstm" else result[1][0]


@eager_under_compile("torch's recurrent kernels", rnn_kernel=True)
def run_stack_packed(mode: str, data: Tensor, batch_sizes: Tensor, sorted_indices: Tensor | None,
                     unsorted_indices: Tensor | None, hx: State, weights: Sequence[LayerWeights], num_layers: int,
                     bidirectional: bool, dropout: float, training: bool,
                     opts: Options = Options()) -> tuple[Tensor, State]:
    """torch's packed kernels on a ``PackedSequence``'s rows; states in batch order, as torch.nn keeps them."""
    refuse(opts, weights)
    weights = [drop_weights(w, opts, training) for w in weights]
    flat = [p for w in weights for p in w.torch_weights]

    def permute(state, index):
        if index is None:
            return state
        return tuple(h.index_select(1, index) for h in state) if mode == "lstm" else state.index_select(1, index)

    result = _OPS[mode](data, batch_sizes, _contiguous(permute(hx, sorted_indices)), flat,
                        weights[0].b_ih is not None, num_layers, dropout, training, bidirectional)
    state = (result[1], result[2]) if mode == "lstm" else result[1]
    return result[0], permute(state, unsorted_indices)
