"""Single-step kernel for generation: one step of a whole recurrent stack, weights packed once.

Generation feeds one token at a time to a batch of one (or a few beams), so the time goes to per-call
overhead and to reading the weights, not to arithmetic. Stepping ``torch.nn.LSTM`` with T = 1 pays
oneDNN's set-up on every call; stepping ``torch.nn.LSTMCell`` pays two matrix products and a dozen
small ops per layer. Here each LSTM or RNN layer is **one** matrix product of the input and the
previous hidden state side by side, ``[x_t, h_{t-1}]`` (B, I + H), with the weights packed once as
``[W_ih; W_hh]ᵀ`` (I + H, G·H) and the two biases summed, followed by as few element-wise calls as
the cell allows.

Packed layouts, per layer (the letters of ``rnnkit/cells``)::

    RNN   W = [W_ih | W_hh]ᵀ                          a = [x, h] W + b;  h' = φ(a)
    LSTM  W = [W_ih | W_hh]ᵀ, gate columns i, f, o, g  (torch stores i, f, g, o; i, f, o side by side
          take one sigmoid call, g one tanh call)
          C' = f ∗ C + i ∗ g;  h' = o ∗ tanh(C')       (h' = h' W_hrᵀ with a projection)
    GRU   W_ihᵀ and W_hhᵀ kept apart:  gx = x W_ihᵀ + b_ih,  gh = h W_hhᵀ + b_hh
          [r, z] = σ(gx_rz + gh_rz);  n = tanh(gx_n + r ∗ gh_n);  h' = n + z ∗ (h − n)

The GRU is the exception because its reset gate multiplies the recurrent part of n alone: one
product would need a zero block in the packed matrix, 33 % more weight bytes to read per step, and
measured 8–40 % slower than two products (H = 256…1024, batch 1, one thread).

Token input (``embedding=``): when layer 0 reads an embedding E (V, I), its input projection of every
token can be computed once, ``table = E W_xᵀ + b`` (V, G·H), so a step looks up one row instead of
reading W_ih. The table is built when it takes at most ``TABLE_LIMIT_BYTES``; otherwise tokens are
embedded and projected as usual. ``step_tokens(tokens, state)`` is that path.

Several rows at once (beam search) in float32 on the CPU take oneDNN's inner product with each weight
reordered once per row count, because MKL's small-batch GEMM repacks the weight on every call
(``_Product``). One row with one thread stays a plain ``addmm``, which streams the weight at one core's
memory speed; with more threads, weights of at least ``THREADED_MIN_ELEMENTS`` also go through oneDNN,
which splits the columns over the threads and so reads the weight with every core (``addmm`` runs a
one-row product on one thread).

Output head (``output=(weight, bias)``, a ``Linear`` from the top layer to logits): packed the same way,
so ``kernel.logits(h)`` reads it as fast as the layers' weights; language models pass their decoder.

The packed copy is a snapshot: ``StepKernel.key`` records each source tensor's identity, storage and
``_version`` (bumped by in-place updates under autograd: ``torch.no_grad(): p.add_(…)``, most optimiser
steps, ``load_state_dict``) and how many optimiser steps have run in the process (fused optimisers such as
``Adam(fused=True)`` leave ``_version`` alone), and ``current_kernel`` repacks when any of them changed.
Writes through ``p.data`` change none of them; ``current_kernel(…, contents=True)`` — what the models'
``generate`` and ``forecast`` ask for, once per call — also compares a checksum of every source tensor
(``weights_checksum``: evenly spaced samples, so a dense write is always seen, a write to a few
elements not necessarily) with the one taken when packing. The kernel is for inference: it runs without
autograd and without dropout (zoneout at its expectation).

Layer-normalised layers normalise their input and recurrent parts apart, so the two products cannot be
one: such a stack steps through the readable cells of ``rnnkit.cells`` (``_normalised``), with copies of its
weights taken when packing, and has no token table and no numpy path (``step_numpy.supports``).
Tested against ``rnnkit.cells`` and against whole-sequence layers.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import LayerNormParams, gru_cell, lstm_cell
from .compiling import eager_under_compile
from .fused.products import ONEDNN
from .types import MODES, LayerWeights, State

__all__ = ["StepKernel", "TABLE_LIMIT_BYTES", "current_kernel", "weights_key"]

#: Largest token-projection table (V × G·H values) ``StepKernel`` builds: 64 MiB.
TABLE_LIMIT_BYTES = 64 * 2**20

#: Smallest weight (K·N values) a one-row product splits over threads. Measured with 2 threads, one row,
#: float32: 256×768 addmm 17 µs vs oneDNN 25 µs; 512×1000 46 vs 35; 512×2048 73 vs 52; 1024×2048 145 vs 78.
THREADED_MIN_ELEMENTS = 400_000


class _Product:
    """``add + x W`` for one packed weight W (K, N); ``add`` is a bias (N,) or a matrix (B, N).

    One row (greedy, sampling) is a matrix-vector product, which ``addmm`` streams at memory speed. A
    few rows (beams) are where MKL's GEMM is weak: it repacks W on every call, so 5 rows cost 3.5–4.5×
    one row (measured, 512×1024 … 1024×2048, one thread). For float32 on the CPU those go through
    oneDNN's inner product with W reordered once per row count instead (5 rows: 1.3–1.6× one row), and so
    does one row of a large W when torch has more than one thread (``THREADED_MIN_ELEMENTS``).
    """

    __slots__ = ("w", "packs", "onednn", "threaded")

    def __init__(self, w: Tensor) -> None:
        self.w = w
        self.packs: dict[int, Tensor] = {}  # row count → oneDNN's reordered W (N, K)
        self.onednn = ONEDNN and w.dtype == torch.float32 and w.device.type == "cpu"
        self.threaded = self.onednn and w.numel() >= THREADED_MIN_ELEMENTS

    def __call__(self, add: Tensor, x: Tensor) -> Tensor:
        rows = x.shape[0]
        if (not self.onednn or not torch.backends.mkldnn.enabled
                or (rows == 1 and not (self.threaded and torch.get_num_threads() > 1))):
            return torch.addmm(add, x, self.w)
        pack = self.packs.get(rows)
        if pack is None:
            if len(self.packs) >= 4:  # a few batch sizes at a time; each pack is a copy of W
                self.packs.pop(next(iter(self.packs)))
            pack = self.packs[rows] = torch.ops.mkldnn._reorder_linear_weight(self.w.t().contiguous(), rows)
        if add.dim() == 1:
            return torch.ops.mkldnn._linear_pointwise(x, pack, add, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(x, add, pack, None, "add")


class _Layer(NamedTuple):
    """One packed layer. ``w``: x ↦ [x, h] [W_ih; W_hh]ᵀ (I + P, G·H) for LSTM and RNN (None for GRU);
    ``w_x``, ``w_h``: its input and recurrent rows (views of ``w``'s matrix; for GRU W_ihᵀ and W_hhᵀ);
    ``b``: b_ih + b_hh (LSTM, RNN) or b_ih (GRU), zeros without bias; ``b_h``: GRU's b_hh;
    ``w_hrT``: (H, P) projection or None."""

    w: _Product | None
    w_x: _Product
    w_h: _Product
    b: Tensor
    b_h: Tensor | None
    w_hrT: Tensor | None


def _sources(weights: Sequence[LayerWeights], embedding: Tensor | None,
             output: tuple[Tensor, Tensor | None] | None) -> list[Tensor]:
    extra = [embedding, *(output or ())]
    return [t for lw in weights for t in lw if t is not None] + [t for t in extra if t is not None]


_optimizer_steps = 0
_step_hook = None


def _bump_optimizer_steps(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


def optimizer_steps() -> int:
    """Optimiser steps taken in this process since the first kernel was packed (a global post-step hook,
    registered then, counts them: fused optimisers update weights without bumping ``_version``)."""
    global _step_hook
    if _step_hook is None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _step_hook = register_optimizer_step_post_hook(_bump_optimizer_steps)
    return _optimizer_steps


def weights_key(weights: Sequence[LayerWeights], embedding: Tensor | None = None,
                output: tuple[Tensor, Tensor | None] | None = None) -> tuple:
    """What identifies one version of the weights: every tensor's id, storage address and version, and the
    process's count of optimiser steps."""
    tensors = _sources(weights, embedding, output)
    return (optimizer_steps(), *((id(t), t.data_ptr(), t._version) for t in tensors))


#: Elements per tensor that ``weights_checksum`` reads (evenly spaced; all of a smaller tensor).
CHECKSUM_SAMPLES = 1024


def weights_checksum(weights: Sequence[LayerWeights], embedding: Tensor | None = None,
                     output: tuple[Tensor, Tensor | None] | None = None) -> tuple[float, ...]:
    """Per source tensor, the float64 sum of up to ``CHECKSUM_SAMPLES`` evenly spaced elements: it sees any
    dense write the key cannot (an EMA, a copy or a hand-written optimiser step through ``p.data``) for a
    few microseconds per tensor, not a read of every weight (up to ~10 % of a 64-token generation)."""
    sums = []
    for t in _sources(weights, embedding, output):
        flat = t.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // CHECKSUM_SAMPLES)]
        if sample.device.type == "cpu" and sample.dtype in (torch.float32, torch.float64):
            sums.append(float(np.add.reduce(sample.numpy(), dtype=np.float64)))  # a few µs, not torch's ~10
        else:
            sums.append(float(sample.sum(dtype=torch.float64)))
    return tuple(sums)


def _pack_layer(mode: str, w: LayerWeights) -> _Layer:
    G_H, I = w.w_ih.shape
    zeros = w.w_ih.new_zeros(G_H)
    w_hrT = w.w_hr.t().contiguous() if w.w_hr is not None else None
    if mode == "gru":
        b_ih = w.b_ih if w.b_ih is not None else zeros
        b_hh = w.b_hh if w.b_hh is not None else zeros
        return _Layer(None, _Product(w.w_ih.t().contiguous()), _Product(w.w_hh.t().contiguous()), b_ih.clone(),
                      b_hh.clone(), w_hrT)
    bias = w.b_ih + w.b_hh if w.b_ih is not None else zeros
    if mode == "lstm":
        H = G_H // 4
        order = torch.tensor([0, 1, 3, 2], device=w.w_ih.device)  # i, f, g, o → i, f, o, g

        def regate(t: Tensor) -> Tensor:
            return t.reshape(4, H, -1).index_select(0, order).reshape(4 * H, -1)

        packed = torch.cat([regate(w.w_ih), regate(w.w_hh)], dim=1)  # (4H, I + P)
        bias = regate(bias.unsqueeze(1)).squeeze(1)
    elif mode in ("rnn_tanh", "rnn_relu"):
        packed = torch.cat([w.w_ih, w.w_hh], dim=1)
    else:
        raise ValueError(f"rnnkit.engine.step: unknown mode {mode!r}; expected one of {MODES}")
    W = packed.t().contiguous()  # (I + P, G·H)
    return _Layer(_Product(W), _Product(W[:I]), _Product(W[I:]), bias.contiguous(), None, w_hrT)


class StepKernel:
    """One step of a unidirectional stack with packed weights.

    ``StepKernel(mode, weights, embedding=None)``: ``mode`` in ``lstm | gru | rnn_tanh | rnn_relu``,
    ``weights`` one ``LayerWeights`` per layer (torch's layout, as ``RNNBase.layer_weights()`` returns
    them), ``embedding`` (V, I) the embedding that feeds layer 0, for ``step_tokens``.

    ``kernel(x, state)``: ``x`` (B, I); ``state`` h (L, B, H) — ``(h, c)`` for LSTM — in torch's layout
    (any strides: a transposed (B, L, H) view works). Returns ``(y (B, H_out), new_state)`` with
    ``new_state`` shaped like ``state`` (contiguous) and ``y`` the top layer's new hidden state.
    ``kernel.step_tokens(tokens, state)``: the same for token ids (B,) through ``embedding``.
    ``output``: ``(weight (V, H_out), bias (V,) or None)`` of the linear layer after the top layer;
    ``kernel.logits(y)`` → (B, V).
    """

    def __init__(self, mode: str, weights: Sequence[LayerWeights], embedding: Tensor | None = None, *,
                 output: tuple[Tensor, Tensor | None] | None = None, zoneout: float = 0.0,
                 zoneout_cell: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"rnnkit.engine.StepKernel: unknown mode {mode!r}; expected one of {MODES}")
        if not weights:
            raise ValueError("rnnkit.engine.StepKernel: weights must hold at least one layer, got none")
        I = weights[0].w_ih.shape[1]
        if embedding is not None and (embedding.dim() != 2 or embedding.shape[1] != I):
            raise ValueError(f"rnnkit.engine.StepKernel: embedding must have shape (V, {I}) to feed layer 0, "
                             f"got {tuple(embedding.shape)}")
        self.mode = mode
        self.key = weights_key(weights, embedding, output)
        self.checksum = weights_checksum(weights, embedding, output)
        self.num_layers = len(weights)
        self.input_size = I
        self.hidden_size = weights[0].w_hh.shape[0] // {"lstm": 4, "gru": 3}.get(mode, 1)
        self._step = {"lstm": self._lstm, "gru": self._gru}.get(mode, self._rnn)
        self.normalised = any(w.layer_norm for w in weights)
        self._relu = mode == "rnn_relu"
        # Zoneout at inference keeps its expectation: h_t = p ∗ h_{t-1} + (1 − p) ∗ h̃_t (C likewise).
        self.zoneout, self.zoneout_cell = float(zoneout), float(zoneout_cell)
        with torch.no_grad():
            self.embedding = None if embedding is None else embedding.detach()
            self.table = None  # (V, G·H): layer 0's input projection of every token, bias included
            if self.normalised:
                if mode not in ("lstm", "gru"):
                    raise ValueError(f"rnnkit.engine.StepKernel: layer norm is for LSTM and GRU, got mode {mode!r}")
                self.layers = []
                self.cells = [LayerWeights(*(None if t is None else t.detach().clone() for t in w)) for w in weights]
                self._step = self._normalised
            else:
                self.layers = [_pack_layer(mode, w) for w in weights]
                first = self.layers[0]
                if embedding is not None and embedding.shape[0] * first.b.numel() * first.b.element_size() \
                        <= TABLE_LIMIT_BYTES:
                    self.table = torch.addmm(first.b, self.embedding, first.w_x.w)
            self.head: _Product | None = None
            if output is not None:
                weight, bias = output
                H_out = weights[-1].w_hr.shape[0] if weights[-1].w_hr is not None else self.hidden_size
                bad_bias = bias is not None and bias.shape != weight.shape[:1]
                if weight.dim() != 2 or weight.shape[1] != H_out or bad_bias:
                    raise ValueError(f"rnnkit.engine.StepKernel: output must be (weight (V, {H_out}), bias (V,) or "
                                     f"None) to read the top layer; got weight {tuple(weight.shape)}, bias "
                                     f"{None if bias is None else tuple(bias.shape)}")
                self.head = _Product(weight.detach().t().contiguous())  # (H_out, V)
                self.head_bias = (bias.detach().clone() if bias is not None
                                  else weight.new_zeros(weight.shape[0]))

    @classmethod
    def for_layer(cls, rnn, embedding: Tensor | None = None,
                  output: tuple[Tensor, Tensor | None] | None = None) -> "StepKernel":
        """Pack an ``rnnkit.RNN/LSTM/GRU`` layer (anything with ``mode``, ``bidirectional`` and
        ``layer_weights()``; its ``options`` give zoneout). It steps what the layer computes in eval mode:
        dropout of every kind off, zoneout's expectation. A bidirectional layer cannot run one step at a
        time: its backward direction needs the whole sequence."""
        if rnn.bidirectional:
            raise ValueError(f"rnnkit.engine.StepKernel: cannot step a bidirectional {type(rnn).__name__} one "
                             "token at a time (the backward direction reads the future); got bidirectional=True")
        options = getattr(rnn, "options", None)
        zone = {} if options is None else {"zoneout": options.zoneout, "zoneout_cell": options.zoneout_cell}
        return cls(rnn.cell, rnn.layer_weights(), embedding, output=output, **zone)

    def is_current(self, weights: Sequence[LayerWeights], embedding: Tensor | None = None,
                   output: tuple[Tensor, Tensor | None] | None = None, contents: bool = False) -> bool:
        """Whether this kernel was packed from these weights as they are now (``contents``: also compare
        their checksum, which sees writes through ``p.data``)."""
        if self.key != weights_key(weights, embedding, output):
            return False
        return not contents or self.checksum == weights_checksum(weights, embedding, output)

    @eager_under_compile("the generation step kernel")
    @torch.no_grad()
    def logits(self, y: Tensor) -> Tensor:
        """The output layer on the top layer's state ``y`` (B, H_out) → (B, V)."""
        if self.head is None:
            raise ValueError("rnnkit.engine.StepKernel.logits: the kernel was packed without an output layer")
        return self.head(self.head_bias, y)

    @eager_under_compile("the generation step kernel")
    @torch.no_grad()
    def __call__(self, x: Tensor, state: State, *, layer_dim: int = 0) -> tuple[Tensor, State]:
        """``layer_dim``: where the layers are in ``state`` — 0 for torch's (L, B, H), 1 for the rows-first
        (B, L, H) of ``rnnkit.models.decoding``; the new state comes back the same way."""
        return self._step(x, None, state, layer_dim)

    @eager_under_compile("the generation step kernel")
    @torch.no_grad()
    def step_tokens(self, tokens: Tensor, state: State, *, layer_dim: int = 0) -> tuple[Tensor, State]:
        """One step for token ids (B,) into layer 0's embedding."""
        if self.embedding is None:
            raise ValueError("rnnkit.engine.StepKernel.step_tokens: the kernel was packed without an embedding")
        if self.table is None:
            return self._step(F.embedding(tokens, self.embedding), None, state, layer_dim)
        return self._step(None, self.table.index_select(0, tokens), state, layer_dim)

    # -- one step per cell kind; x (B, I) or gx (B, G·H), layer 0's input projection ---------------
    # Every call here costs microseconds of dispatch at batch 1, so the steps are written for few calls:
    # one unbind for all layers' states, one split + chunk for the gates, one stack per state.
    def _lstm(self, x: Tensor | None, gx: Tensor | None, state: tuple[Tensor, Tensor], dim: int):
        H = self.hidden_size
        hs, Cs = [], []
        for p, h, C in zip(self.layers, state[0].unbind(dim), state[1].unbind(dim)):  # h (B, P), C (B, H)
            if gx is None:
                G = p.w(p.b, torch.cat((x, h), 1))  # (B, 4H): i, f, o, g
            else:
                G, gx = p.w_h(gx, h), None
            ifo, g = G.split((3 * H, H), 1)
            i, f, o = ifo.sigmoid_().chunk(3, 1)
            C_t = torch.addcmul(f * C, i, g.tanh_())
            x = o * torch.tanh(C_t)  # from the cell's own new C, before zoneout (Krueger et al. 2017)
            if p.w_hrT is not None:
                x = x @ p.w_hrT  # (B, P)
            if self.zoneout:
                x = torch.lerp(x, h, self.zoneout)
            if self.zoneout_cell:
                C_t = torch.lerp(C_t, C, self.zoneout_cell)
            hs.append(x)
            Cs.append(C_t)
        return x, (torch.stack(hs, dim), torch.stack(Cs, dim))

    def _gru(self, x: Tensor | None, gx: Tensor | None, state: Tensor, dim: int):
        H = self.hidden_size
        hs = []
        for p, h in zip(self.layers, state.unbind(dim)):
            if gx is None:
                gx = p.w_x(p.b, x)  # (B, 3H): r, z, n from the input
            gh = p.w_h(p.b_h, h)  # (B, 3H): r, z, n from the state
            gx_rz, gx_n = gx.split((2 * H, H), 1)
            gh_rz, gh_n = gh.split((2 * H, H), 1)
            r, z = gx_rz.add(gh_rz).sigmoid_().chunk(2, 1)
            n = torch.addcmul(gx_n, r, gh_n).tanh_()
            x = torch.lerp(n, h, z)  # n + z ∗ (h − n)
            if self.zoneout:
                x = torch.lerp(x, h, self.zoneout)
            hs.append(x)
            gx = None
        return x, torch.stack(hs, dim)

    def _normalised(self, x: Tensor | None, gx: Tensor | None, state: State, dim: int):
        """A layer-normalised LSTM or GRU stack: each layer the readable cell's step (``rnnkit.cells``)."""
        lstm = self.mode == "lstm"
        if x is None:
            raise ValueError("rnnkit.engine.StepKernel: a layer-normalised stack steps from its input x")
        rows = zip(state[0].unbind(dim), state[1].unbind(dim)) if lstm else state.unbind(dim)
        hs, Cs = [], []
        for w, s in zip(self.cells, rows):
            norm = LayerNormParams(w.ln_ih_w, w.ln_ih_b, w.ln_hh_w, w.ln_hh_b, w.ln_c_w, w.ln_c_b)
            if lstm:
                x, C_t = lstm_cell(x, s, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr, norm=norm)
                h, C = s
                if self.zoneout_cell:
                    C_t = torch.lerp(C_t, C, self.zoneout_cell)
                Cs.append(C_t)
            else:
                h = s
                x = gru_cell(x, h, w.w_ih, w.w_hh, w.b_ih, w.b_hh, norm=norm)
            if self.zoneout:
                x = torch.lerp(x, h, self.zoneout)
            hs.append(x)
        return x, ((torch.stack(hs, dim), torch.stack(Cs, dim)) if lstm else torch.stack(hs, dim))

    def _rnn(self, x: Tensor | None, gx: Tensor | None, state: Tensor, dim: int):
        hs = []
        for p, h in zip(self.layers, state.unbind(dim)):
            if gx is None:
                a = p.w(p.b, torch.cat((x, h), 1))
            else:
                a, gx = p.w_h(gx, h), None
            x = a.relu_() if self._relu else a.tanh_()
            if self.zoneout:
                x = torch.lerp(x, h, self.zoneout)
            hs.append(x)
        return x, torch.stack(hs, dim)


def current_kernel(kernel: StepKernel | None, rnn, embedding: Tensor | None = None,
                   output: tuple[Tensor, Tensor | None] | None = None, contents: bool = True) -> StepKernel:
    """``kernel`` if it was packed from ``rnn``'s weights (and ``embedding``, ``output``) as they are now,
    else a freshly packed one. Costs a walk over the parameters and, with ``contents`` (for a whole
    generation or forecast), one reduction per tensor; ``contents=False`` is for per-token calls."""
    if kernel is not None and kernel.is_current(rnn.layer_weights(), embedding, output, contents):
        return kernel
    return StepKernel.for_layer(rnn, embedding, output)
