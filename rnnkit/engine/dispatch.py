"""The one place that chooses how a recurrent stack runs.

``engine="auto"`` picks, by measurement on CPU (2 cores, torch 2.13; see benchmarks/bench_layers.py):

- CUDA tensors → ``native`` (cuDNN fuses every cell kind and the packed case).
- options torch's kernels lack (dropout kinds, recurrent dropout, zoneout, layer norm) → ``fused``,
  except where locked masks between layers are the only one, there are no per-sequence lengths, and
  torch's kernel would be chosen without them (e.g. training a float32 LSTM): then ``native-layers``,
  torch's kernel one layer at a time with the masks applied between layers by the same stacking code
  as the other engines; where no mask is drawn (eval, ``dropout=0`` or one layer) ``run`` hands the
  whole stack to torch's kernel instead.
- inference (no gradient needed) → ``native``: torch's C++ time loop has the same GEMMs and less per-call
  overhead than any loop written in Python (variable lengths included: its packed loop) — except a vanilla
  RNN in float32 on the CPU once a call holds at least ``FUSED_INFERENCE_MIN_WORK`` rows × hidden units
  (T·B·H, or the packed rows × H) over at least ``FUSED_MIN_STEPS`` steps: its fused loop is one in-place
  GEMM and one sigmoid (tanh) or ReLU a step, and ran 1.13–1.58× torch's with two threads, 1.13–1.48× with
  one, on bench_layers' configurations (``--mode infer --engine fused,native``); below about 50k, the fused
  engine's fixed cost per call (~130 µs) loses (B8 T25 H64: 0.79×). So does a GRU's under the same
  conditions where its per-step products go through MKL's packed GEMM (``fused/packed_gemm.py``: float32,
  each of its forward products — r and z, H × 2H, and n, H × H — at least ``products.PACKED_MIN_ELEMENTS``
  values, i.e. H ≥ 256): 1.14–1.32× torch's on bench_layers' configurations of H = 256 and 512 (an AVX-512
  Xeon, two threads), and 1.00–1.39× at T·B·H ≈ 200k with H = 256–512, while at H ≤ 128 it was about even
  (0.90–1.03×, 1.21× at B128 H64) and stays on torch's loop; so does the GRU where MKL's packed GEMM is not
  in torch (its fused inference ranged 0.76–1.41× with no simple rule there).
- training with variable lengths → ``fused``: torch's packed path leaves oneDNN and runs several
  times slower, while the fused engine does work proportional to the sum of the lengths.
- training a float32 LSTM → ``native``: oneDNN runs near the GEMM peak, which torch ops cannot beat.
  With variable lengths (``fused``), the leading steps that every sequence runs (all but the last
  step of the shortest sequence, when that is at least ``NATIVE_PREFIX_MIN_STEPS``) still go to
  torch's kernel as one dense block, and the fused loop takes over from there (``native_prefix``).
- training a GRU, a vanilla RNN, or anything in float64 → ``fused`` (from ``FUSED_MIN_STEPS`` steps
  on; shorter dense batches → ``native``): torch has no fused CPU kernel there,
  and its autograd graph of per-step ops is slower than the hand-written backward pass — at large steps
  too, since the fused engine reuses its large blocks (``fused/buffers.py``): GRU B128 T50 H512 1.16×,
  B256 H512 1.14×, B128 H1024 1.08×, B512 H256 1.11× torch.nn with two threads, 1.03–1.08× with one.

Two contexts change the choice. Inside ``torch.autocast`` a plain stack runs ``native``, so it computes
exactly what torch.nn computes there (in the autocast's lower precision where torch's autocast rules say
so); every other engine runs with autocast switched off, in the parameters' dtype (the fused kernels
write their results in place and cannot mix precisions). So does torch's LSTM kernel given a float32 padded
batch on a CPU whose oneDNN has no LSTM in the autocast's precision (bfloat16 needs AVX-512; torch.nn.LSTM
fails there): ``native.runs_under_autocast``. Under ``torch.func`` transforms (``grad``,
``vmap``, ``jacrev``, …) ``auto`` runs ``reference``, whose cells are plain differentiable torch ops; the
fused engine's hand-written ``autograd.Function`` cannot run there and says so. Under ``torch.jit.trace``
(whose tracer the fused engine's Function breaks) and inside a forward-mode AD level
(``torch.autograd.forward_ad.dual_level``: the Functions have no ``jvp``) ``auto`` runs ``native``, or
``reference`` for options torch's kernel lacks — and for forward-mode AD on a GPU, where torch's kernel is
cuDNN's, which has no forward-mode derivatives either. A batched backward pass (``is_grads_batched=True``,
``jacobian(..., vectorize=True)``) starts after the engine was chosen: the fused engine refuses it by name.
"""
from __future__ import annotations

import functools
import warnings
from typing import Sequence

import torch
import torch.autograd.forward_ad as forward_ad
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from . import fused, native, reference
from .fused import products
from .compiling import recording
from .precision import autocast_dtype, own_precision
from .stack import run_stack
from .types import LayerWeights, Options, State

ENGINES = ("auto", "reference", "fused", "native")

_LAYER_FNS = {"reference": reference.run_layer, "fused": fused.run_layer, "native-layers": native.run_layer}


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, …) is tracing this call."""
    return torch._C._are_functorch_transforms_active()


def forward_ad_active() -> bool:
    """Whether a forward-mode AD level is open (``torch.autograd.forward_ad.dual_level``): dual tensors may
    flow in, whose tangents only torch's kernels and the reference cells propagate."""
    return getattr(forward_ad, "_current_level", -1) >= 0


#: Fewest steps for which ``auto`` trains on the fused engine a dense batch (no per-sequence lengths) that it
#: would otherwise give to the fused engine (GRU, vanilla RNN, float64 LSTM), and for which it runs a vanilla
#: RNN's inference there. Shorter calls — a decoder run one step at a time for scheduled sampling — go to
#: torch's kernel, as the fused engine's fixed cost per call outweighs its faster steps there (inference of
#: 1–8 steps measured 0.95–1.18×). native ÷ fused training time, two threads: T = 1 0.36–0.49, T = 2
#: 0.57–0.93, T = 8 0.85–1.13, T = 12 1.01–1.20, T = 16 1.11–1.37 (GRU/RNN H64–H512; float64 alike).
FUSED_MIN_STEPS = 10

#: Smallest T·B·H (rows × hidden units per layer and direction) for which ``auto`` runs a vanilla RNN's (or a
#: GRU's whose step products MKL packs) float32 CPU inference on the fused engine (module docstring). Measured with two threads, no grad:
#: T·B·H = 51k 1.05–1.08×, 102k 1.01–1.31×, 205k 1.12–1.26×; 26k 0.82–0.84×, 13k 0.79×.
FUSED_INFERENCE_MIN_WORK = 100_000


def _fused_inference(mode: str, x: Tensor, lengths: Tensor | None, hidden_size: int) -> bool:
    """A vanilla RNN's, or a GRU's whose step products MKL packs, float32 CPU inference, large enough (above)."""
    steps = x.shape[0] if x.dim() == 3 else len(lengths)  # a PackedSequence's rows: its batch sizes
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and steps >= FUSED_MIN_STEPS
            and x.shape[:-1].numel() * hidden_size >= FUSED_INFERENCE_MIN_WORK):
        return False
    # (the GRU's forward makes its products per column block: r and z (H, 2H), n (H, H), each packed if large)
    return mode in ("rnn_tanh", "rnn_relu") or (mode == "gru" and products.packs(hidden_size**2, x.dtype))


def warn_if_recorded(name: str, x: Tensor) -> None:
    """The reference engine's time loop, recorded, replays this input's number of steps for any input."""
    if name == "reference" and recording():
        warnings.warn(f"rnnkit: a trace or export of the reference engine (the cells stepped in a Python loop; "
                      f"engine='auto' runs it for options torch's kernels lack) records the loop over this input's "
                      f"{x.shape[0]} steps and gives that many steps for any input; record it with inputs of that "
                      f"length only, or use torch.compile", torch.jit.TracerWarning, stacklevel=4)


def choose_engine(engine: str, mode: str, x: Tensor, lengths: Tensor | None, opts: Options = Options(),
                  layer_norm: bool = False, needs_grad: bool = True, hidden_size: int = 0) -> str:
    """Resolve ``"auto"`` to a concrete engine name for this input: ``x`` (T, B, I) padded (or a packed
    sequence's rows, with ``lengths`` its batch sizes); ``hidden_size`` H of the layers (0: unknown, which
    keeps inference on torch's kernel)."""
    tracing = recording() or forward_ad_active()
    if engine != "auto":
        if engine == "fused" and forward_ad_active():
            raise ValueError("engine='fused' cannot compute forward-mode derivatives (inside "
                             "torch.autograd.forward_ad.dual_level()): its derivatives are a hand-written backward "
                             "pass; use engine='auto', 'native' or 'reference'")
        if engine == "fused" and transforms_active():
            raise ValueError("engine='fused' cannot run under torch.func transforms (grad, vmap, jacrev, …): its "
                             "backward pass is a hand-written autograd.Function; use engine='auto' or 'reference'")
        if engine == "fused" and tracing:
            raise ValueError("engine='fused' cannot be recorded by torch.jit.trace or torch.export (its hand-written "
                             "autograd.Function writes into its own blocks, which a recorded graph cannot "
                             "differentiate); use engine='auto' or 'native'")
        return engine
    if transforms_active():
        return "reference"
    if tracing:  # (or forward-mode AD) torch's kernel where it computes the layer, else the cells' plain torch ops
        cudnn_forward_ad = forward_ad_active() and x.is_cuda  # cuDNN's kernels have no forward-mode derivatives
        return "reference" if layer_norm or opts.needs_rnnkit_engine or cudnn_forward_ad else "native"
    if layer_norm:
        return "fused"
    if opts.needs_rnnkit_engine:
        between_layers = not opts._replace(dropout_kind="naive").needs_rnnkit_engine  # only the mask kind
        plain = choose_engine(engine, mode, x, lengths, Options(), False, needs_grad, hidden_size)
        return "native-layers" if between_layers and plain == "native" and lengths is None else "fused"
    autocast = autocast_dtype(x.device) is not None
    if not needs_grad and not autocast and _fused_inference(mode, x, lengths, hidden_size):
        return "fused"
    if x.is_cuda or not needs_grad or autocast:
        return "native"
    if lengths is not None:
        return "fused"
    if x.dtype == torch.float32 and mode == "lstm":
        return "native"
    if x.shape[0] < FUSED_MIN_STEPS:  # a few steps: torch's C++ loop costs less per call
        return "native"
    return "fused"


def _locked_only(opts: Options, weights: Sequence[LayerWeights]) -> bool:
    """Whether locked masks between layers (dropout_kind "locked", or "variational" without recurrent dropout) are
    the one option set that torch's whole-stack kernel lacks."""
    return (opts.dropout_kind != "naive" and not weights[0].layer_norm
            and not opts._replace(dropout_kind="naive").needs_rnnkit_engine)


def _refuse_locked_with_lengths(opts: Options, given: str) -> None:
    raise ValueError(f"engine='native' runs dropout_kind={opts.dropout_kind!r} one layer at a time with torch's kernel, "
                     f"on a padded batch without per-sequence lengths only; with {given} in training use "
                     "engine='fused' or 'auto'")


def native_prefix(engine: str, chosen: str, mode: str, x: Tensor, weights: Sequence[LayerWeights]) -> bool:
    """Whether ``auto``'s fused LSTM hands its dense leading steps to torch's kernel: a plain float32 LSTM
    (no projection) on the CPU, where that kernel is oneDNN. The layer checks the per-call masks itself."""
    return (engine == "auto" and chosen == "fused" and mode == "lstm" and x.dtype == torch.float32
            and x.device.type == "cpu" and weights[0].w_hr is None and torch.backends.mkldnn.is_available())


def _as_arrived(x: Tensor, hx: State, arrived: tuple[torch.dtype, ...] | None) -> tuple[Tensor, State]:
    """``x`` and the states cast back to the dtypes they arrived in (lossless: from a lower precision up and
    back); states the caller did not give take the input's, as torch.nn makes its zero state."""
    if arrived is None:
        return x, hx
    states = hx if isinstance(hx, tuple) else (hx,)
    dtypes = arrived[1:] or (arrived[0],) * len(states)
    states = tuple(s.to(d) for s, d in zip(states, dtypes))
    return x.to(arrived[0]), states if isinstance(hx, tuple) else states[0]


def _needs_grad(x: Tensor, hx: State, weights: Sequence[LayerWeights]) -> bool:
    states = hx if isinstance(hx, tuple) else (hx,)
    return torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, *states, *(p for w in weights for p in w if p is not None)))


def run_packed(
    engine: str,
    mode: str,
    packed: PackedSequence,
    hx: State,
    weights: Sequence[LayerWeights],
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
    opts: Options = Options(),
    arrived: tuple[torch.dtype, ...] | None = None,
) -> tuple[Tensor, State] | None:
    """Run a stack on a ``PackedSequence``'s rows directly — no padding round trip — when the chosen
    engine can: ``native`` always, ``fused`` for the plain layer (no active dropout between layers, no
    variant option, whose masks are drawn per padded step). Returns None where the padded path must run.
    ``arrived``: see ``run``."""
    data = packed.data
    name = choose_engine(engine, mode, data, packed.batch_sizes, opts, weights[0].layer_norm,
                         _needs_grad(data, hx, weights), weights[0].w_hh.shape[1])
    if name == "native" and _locked_only(opts, weights):
        if training and dropout > 0 and num_layers > 1:
            _refuse_locked_with_lengths(opts, "a PackedSequence")
        opts = opts._replace(dropout_kind="naive")  # no mask between layers: the kind is moot
    if name == "native":
        data, hx = _as_arrived(data, hx, arrived)
        return native.run_stack_packed(mode, data, packed.batch_sizes, packed.sorted_indices,
                                       packed.unsorted_indices, hx, weights, num_layers, bidirectional, dropout,
                                       training, opts)
    plain = opts == Options() and not weights[0].layer_norm and not (training and dropout > 0)
    if name == "fused" and plain:
        with own_precision(data):
            return fused.run_stack_packed(mode, data, packed.batch_sizes, packed.sorted_indices, hx, weights,
                                          num_layers, bidirectional, native_prefix(engine, name, mode, data, weights))
    return None


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
    arrived: tuple[torch.dtype, ...] | None = None,
) -> tuple[Tensor, State]:
    """Run a whole stack: ``x`` (T, B, I) padded time-major, ``hx`` stacked (L·D, B, ·) states, both in the
    parameters' dtype. ``arrived``: inside ``torch.autocast``, the dtypes the caller's input and states came
    in (``layers.checks.autocast_arrival``); torch's kernel gets them back, as torch.nn would pass them."""
    name = choose_engine(engine, mode, x, lengths, opts, weights[0].layer_norm, _needs_grad(x, hx, weights),
                         weights[0].w_hh.shape[1])
    masks_between = training and dropout > 0 and num_layers > 1
    if name == "native" and engine == "native" and _locked_only(opts, weights):
        # torch's kernels run locked dropout one layer at a time, with the masks drawn between the layers as
        # every engine draws them (padded input without lengths only, as ``auto``'s choice)
        if masks_between and lengths is not None:
            _refuse_locked_with_lengths(opts, "lengths=")
        name = "native-layers" if masks_between else name
    if name in ("native", "native-layers") and not masks_between and _locked_only(opts, weights):
        name, opts = "native", opts._replace(dropout_kind="naive")  # no mask between layers: the kind is moot
    if name == "native":  # (here too: the one-layer-at-a-time switch below would pass options torch lacks)
        native.refuse(opts, weights)
    if name == "native" and training and opts.weight_drop > 0 and dropout > 0 and num_layers > 1 and lengths is None:
        # torch's whole-stack kernel draws its dropout masks after every W_hh mask has been drawn; one layer at a
        # time, the stacking code draws them in the order every other engine does, so a seed gives the same masks
        name = "native-layers"
    args = (mode, x, hx, weights, lengths, num_layers, bidirectional, dropout, training, opts)
    if name == "native":
        # Inside torch.autocast torch's kernel gets the dtypes the caller gave, as torch.nn's would; where this
        # CPU's LSTM kernel cannot run them, in the parameters' dtype with autocast off instead.
        x_given, hx_given = _as_arrived(x, hx, arrived)
        if lengths is not None or native.runs_under_autocast(mode, x_given):
            return native.run_stack(mode, x_given, hx_given, *args[3:])
        with own_precision(x):
            return native.run_stack(mode, x, hx, *args[3:])
    layer_fn = _LAYER_FNS[name]
    warn_if_recorded(name, x)
    if native_prefix(engine, name, mode, x, weights):
        layer_fn = functools.partial(layer_fn, native_prefix=True)
    with own_precision(x):
        return run_stack(layer_fn, *args, pair_fn=fused.run_bidirectional if name == "fused" else None)

