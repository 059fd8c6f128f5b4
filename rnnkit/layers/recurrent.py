"""``rnnkit.RNN``, ``rnnkit.LSTM``, ``rnnkit.GRU``: drop-in replacements for their ``torch.nn`` namesakes.

Same constructor arguments, same forward signature and return values, same parameter names
(``weight_ih_l0``, ``weight_hh_l1_reverse``, ``bias_ih_l0``, ``weight_hr_l0``, …) and initialisation,
so ``load_state_dict`` works in both directions. Two additions, both keyword-only:

- ``engine="auto" | "reference" | "fused" | "native"`` on the constructor (changeable later through
  the ``engine`` attribute); ``auto`` picks the fastest correct engine (``rnnkit/engine/dispatch.py``).
- ``lengths=`` on ``forward`` for a padded batch: a sequence's state is frozen after its last step
  and its outputs there are zero, exactly as if it had been passed as a ``PackedSequence``.

Inside ``torch.autocast`` the input may be in the autocast's precision (it is cast to the parameters'
dtype); a plain stack then runs torch's kernel under autocast's rules and every other engine in the
parameters' dtype. Under ``torch.func`` transforms ``auto`` runs the reference engine (see ``dispatch``).

Sequence regularisation and cell variants (keyword-only; every one runs on the fused engine with its
backward pass written by hand — ``engine="auto"`` picks it, ``engine="native"`` refuses those torch's kernels
cannot run; weight-drop, and locked masks between layers on padded input without lengths, it runs):

- ``dropout=p`` keeps torch's meaning (outputs of every layer but the last); ``dropout_kind`` draws
  its masks ``"naive"`` (new at every step, torch's; the default), ``"locked"`` (one per sequence, the
  same at every step) or ``"variational"`` (Gal & Ghahramani 2016: locked, plus one per-sequence mask
  on h_{t-1} where it enters the gates, at rate ``recurrent_dropout=q``; giving ``recurrent_dropout``
  alone selects it).
- ``weight_drop=p``: DropConnect on every W_hh, one mask per forward call (AWD-LSTM, Merity et al. 2018).
  It changes only the weights, so torch's native kernels can run it too.
- ``zoneout=p`` (Krueger et al. 2017): each unit of h keeps its previous value with probability p,
  h_t = m ∗ h_{t-1} + (1 − m) ∗ h̃_t; ``zoneout_cell`` does the same for the LSTM cell state (default:
  the same p). In eval mode the expectation is used: m = p.
- ``layer_norm=True`` (LSTM, GRU): the layer-normalised cell of Ba, Kiros & Hinton (2016), with
  learnable gains (start 1) and biases (start 0) ``ln_ih_weight_l0``, ``ln_hh_weight_l0``,
  ``ln_cell_weight_l0`` (LSTM), ``ln_*_bias_l0``.
- ``init="torch" | "orthogonal" | "identity"`` and ``forget_bias`` (LSTM): see ``rnnkit/layers/init.py``.

Every probability must lie in [0, 1); eval mode is deterministic; the masks come from torch's RNG, so
``torch.manual_seed`` reproduces a run.

Shapes (T steps, B batch, D = 2 if bidirectional else 1, H_out = proj_size or hidden_size):
input (T, B, I) — (B, T, I) with ``batch_first`` — or unbatched (T, I); h_0 and h_n (D·num_layers, B, H_out);
c_0 and c_n (D·num_layers, B, hidden_size); output (T, B, D·H_out).
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import NONLINEARITIES
from ..engine import ENGINES, LayerWeights, Options, dispatch
from .checks import (InputError, autocast_arrival, autocast_input, check_int, check_lengths, check_positive_int,
                     check_probability, check_shape, check_tensor, is_flag, is_number)
from .init import INITS, assign_weight, init_weights

_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
#: Parameter roles in ``LayerWeights`` order (parameter name = role + "_l{k}" [+ "_reverse"]).
_ROLES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "ln_ih_weight", "ln_ih_bias",
          "ln_hh_weight", "ln_hh_bias", "ln_cell_weight", "ln_cell_bias")
DROPOUT_KINDS = ("naive", "locked", "variational")


def check_options(owner, mode, dropout_kind, recurrent_dropout, weight_drop, zoneout, zoneout_cell, layer_norm,
                  init, forget_bias, bias=True, stacklevel=4) -> Options:
    """Validate the regularisation and variant options; returns the engine's ``Options``.
    ``stacklevel`` makes a warning point at the user's line that built the module."""
    recurrent_dropout = check_probability(owner, "recurrent_dropout", recurrent_dropout)
    weight_drop = check_probability(owner, "weight_drop", weight_drop)
    zoneout = check_probability(owner, "zoneout", zoneout)
    if dropout_kind is None:
        dropout_kind = "variational" if recurrent_dropout > 0 else "naive"
    if not isinstance(dropout_kind, str) or dropout_kind not in DROPOUT_KINDS:
        raise ValueError(f"{owner}: unknown dropout_kind {dropout_kind!r}; expected one of {DROPOUT_KINDS}")
    dropout_kind = str(dropout_kind)  # (NumPy's str_ too: plain values pickle for torch.load(weights_only=True))
    if recurrent_dropout > 0 and dropout_kind != "variational":
        raise ValueError(f"{owner}: recurrent_dropout belongs to dropout_kind='variational', "
                         f"got dropout_kind={dropout_kind!r}")
    if zoneout_cell is None:
        zoneout_cell = zoneout if mode == "lstm" else 0.0
    elif mode != "lstm":
        raise ValueError(f"{owner}: zoneout_cell is an LSTM option (the cell state); a {mode!r} cell has none")
    zoneout_cell = check_probability(owner, "zoneout_cell", zoneout_cell)
    if not is_flag(layer_norm):
        raise TypeError(f"{owner}: layer_norm must be True or False, got {layer_norm!r}")
    if layer_norm and mode not in ("lstm", "gru"):
        raise ValueError(f"{owner}: layer_norm is supported by LSTM and GRU, not by a {mode!r} cell")
    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"{owner}: unknown init {init!r}; expected one of {INITS}")
    if init == "identity" and mode != "rnn_relu":
        warnings.warn(f"{owner}: init='identity' is the IRNN recipe (Le et al. 2015), meant for "
                      f"RNN(nonlinearity='relu'); with {mode!r} the identity recurrence may saturate",
                      stacklevel=stacklevel)
    if forget_bias is not None:
        if mode != "lstm":
            raise ValueError(f"{owner}: forget_bias is an LSTM option, a {mode!r} cell has no forget gate")
        if not is_number(forget_bias):
            raise TypeError(f"{owner}: forget_bias must be a number, got {forget_bias!r}")
        if not math.isfinite(forget_bias):
            raise ValueError(f"{owner}: forget_bias must be finite, got {forget_bias!r}")
        if not bias:
            raise ValueError(f"{owner}: forget_bias={forget_bias} needs bias=True (there is no bias to set)")
    return Options(dropout_kind, recurrent_dropout, weight_drop, zoneout, zoneout_cell)


def options_as_tuple(module) -> dict:
    """The module's pickled state with ``options`` as a plain tuple: ``torch.load(weights_only=True)`` of a
    whole saved module then needs only the module's class allowed (``torch.serialization.safe_globals``),
    as for torch.nn's layers."""
    state = nn.Module.__getstate__(module)  # (a copy of __dict__, less what torch leaves out: a compiled call)
    state["options"] = tuple(module.options)
    return state


def options_from_tuple(state: dict) -> dict:
    return {**state, "options": Options(*state["options"])}  # (an Options of an older pickle passes unchanged)


def options_repr(module) -> str:
    """The variant options a module was built with, where they differ from the defaults, as constructor
    keywords (for ``extra_repr``; an implied ``dropout_kind`` and ``zoneout_cell`` are left implicit)."""
    o, parts = module.options, []
    if o.dropout_kind != ("variational" if o.recurrent_dropout > 0 else "naive"):
        parts.append(f"dropout_kind={o.dropout_kind!r}")
    for name in ("recurrent_dropout", "weight_drop", "zoneout"):
        if getattr(o, name):
            parts.append(f"{name}={getattr(o, name)}")
    if o.zoneout_cell != (o.zoneout if module.cell == "lstm" else 0.0):
        parts.append(f"zoneout_cell={o.zoneout_cell}")
    if module.layer_norm:
        parts.append("layer_norm=True")
    if module.init != "torch":
        parts.append(f"init={module.init!r}")
    if module.forget_bias is not None:
        parts.append(f"forget_bias={module.forget_bias}")
    return "".join(", " + p for p in parts)


class RNNBase(nn.Module):
    """Parameters, checks and input/output formats shared by the three layers."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        engine: str = "auto",
        dropout_kind: str | None = None,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float = 0.0,
        zoneout_cell: float | None = None,
        layer_norm: bool = False,
        init: str = "torch",
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        owner = f"rnnkit.{type(self).__name__}"
        input_size = check_positive_int(owner, "input_size", input_size)
        hidden_size = check_positive_int(owner, "hidden_size", hidden_size)
        num_layers = check_positive_int(owner, "num_layers", num_layers)
        if not is_number(dropout) or not 0 <= dropout <= 1:
            raise ValueError(f"{owner}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{owner}: dropout={dropout} has no effect with num_layers=1 — it is applied between layers",
                stacklevel=3,
            )
        proj_size = check_int(owner, "proj_size", proj_size, 0)
        if proj_size and cell != "lstm":
            raise ValueError(f"{owner}: proj_size is only supported by LSTM, got proj_size={proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"{owner}: proj_size must be smaller than hidden_size, got {proj_size} >= {hidden_size}")
        self._check_engine(engine)
        self.options = check_options(owner, cell, dropout_kind, recurrent_dropout, weight_drop, zoneout,
                                      zoneout_cell, layer_norm, init, forget_bias, bias)
        self.layer_norm, self.init = bool(layer_norm), str(init)  # (NumPy's too: checked above)
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        self.cell = cell  # rnnkit's name, as models' cell= argument; torch.nn's is ``mode``
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.engine = engine

        factory = {"device": device, "dtype": dtype}
        gate_size = _GATES[cell] * hidden_size
        h_out = proj_size or hidden_size
        D = 2 if bidirectional else 1
        self._weight_names: list[tuple[str, ...]] = []
        for layer in range(num_layers):
            for direction in range(D):
                layer_input = input_size if layer == 0 else h_out * D
                sfx = f"_l{layer}{'_reverse' if direction == 1 else ''}"
                shapes = {f"weight_ih{sfx}": (gate_size, layer_input), f"weight_hh{sfx}": (gate_size, h_out)}
                if bias:
                    shapes[f"bias_ih{sfx}"] = (gate_size,)
                    shapes[f"bias_hh{sfx}"] = (gate_size,)
                if proj_size:
                    shapes[f"weight_hr{sfx}"] = (proj_size, hidden_size)
                if layer_norm:
                    for part, size in (("ih", gate_size), ("hh", gate_size)) + ((("cell", hidden_size),)
                                                                                 if cell == "lstm" else ()):
                        shapes[f"ln_{part}_weight{sfx}"] = (size,)
                        shapes[f"ln_{part}_bias{sfx}"] = (size,)
                for name, shape in shapes.items():
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
                self._weight_names.append(tuple(shapes))
        self.reset_parameters()
        self.flatten_parameters()  # (made on a GPU: into cuDNN's block at once, as torch.nn does)

    # -- torch.nn compatibility -----------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Initialise by the ``init`` scheme (torch's default: uniform in ±1/√hidden_size); layer-norm
        gains start at 1 and their biases at 0. A weight reparametrised by ``torch.nn.utils`` (parametrize,
        weight_norm, prune) gets its value through the parameters behind it (``init.assign_weight``)."""
        for names in self._weight_names:
            with torch.no_grad():  # each value made apart, then written in: a reparametrised weight is computed
                values = {n.rsplit("_l", 1)[0]: torch.empty_like(getattr(self, n)) for n in names}
                for role, p in values.items():
                    if role.startswith("ln_"):
                        p.fill_(1.0 if "weight" in role else 0.0)
            init_weights(values, self.hidden_size, _GATES[self.cell], self.init, self.forget_bias)
            for n, value in zip(names, values.values()):
                assign_weight(self, n, value, 1.0 / math.sqrt(self.hidden_size))

    @property
    def mode(self) -> str:
        """torch.nn's name of the layer's cell: 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU' (``cell`` holds
        rnnkit's lowercase one, the spelling of the models' ``cell=`` argument)."""
        return self.cell.upper()

    def flatten_parameters(self) -> None:
        """On a GPU, gathers the weights into one block of memory in cuDNN's layout, as torch.nn does: cuDNN
        otherwise copies them into such a block at every call (and warns that it does). The parameters stay
        the same objects, now views of that block; the layer calls this itself when it is made or moved
        (``.to``, ``.cuda``, ``.half``) and when a call on the GPU finds other weights than it last saw (a
        parameter replaced, ``load_state_dict(assign=True)``, a deep copy). Does nothing on the CPU, for
        layer-normalised layers (torch's kernel never runs them) or for weights that are not plain
        parameters (reparametrised or shared)."""
        try:
            self._flatten()
        finally:
            self._cudnn_block = self._weights_seen()  # the weights last seen here (``_keep_flat``)

    def _weights_seen(self) -> tuple:
        return tuple(None if p is None else (id(p), p.data_ptr())
                     for p in map(self._parameters.get, self._flat_weights_names))

    def _keep_flat(self) -> None:
        """Before a call on the GPU: flattens again where the weights are not those flatten_parameters saw."""
        if self._weights_seen() != getattr(self, "_cudnn_block", None) and not torch.jit.is_tracing() \
                and not torch.compiler.is_compiling():
            self.flatten_parameters()

    def _flatten(self) -> None:
        if self.layer_norm or not torch._use_cudnn_rnn_flatten_weight():
            return
        weights = [self._parameters.get(name) for name in self._flat_weights_names]
        first = weights[0]
        if not all(isinstance(w, nn.Parameter) and w.is_cuda and w.dtype == first.dtype
                   and torch.backends.cudnn.is_acceptable(w) for w in weights):
            return
        if len({w.data_ptr() for w in weights}) != len(weights):  # one tensor twice: cuDNN would split it
            return
        from torch.backends.cudnn import rnn as cudnn_rnn  # (here: it reads torch's cuDNN bindings)

        per_layer = (4 if self.bias else 2) + (1 if self.proj_size else 0)
        with torch.cuda.device_of(first), torch.no_grad():
            torch._cudnn_rnn_flatten_weight(weights, per_layer, self.input_size, cudnn_rnn.get_cudnn_mode(self.mode),
                                            self.hidden_size, self.proj_size, self.num_layers, self.batch_first,
                                            self.bidirectional)

    def _apply(self, fn, recurse: bool = True):
        module = super()._apply(fn, recurse)
        self.flatten_parameters()  # (moved to a GPU: into cuDNN's block)
        return module

    @property
    def _all_weights(self) -> list[list[str]]:
        """The parameter names of each layer-direction (torch.nn's attribute, read by code written for it)."""
        return [list(names) for names in self._weight_names]

    # torch.nn.RNNBase's own helpers, for code that wraps or subclasses torch's layers: torch's functions,
    # reading the attributes both classes have (they raise torch's errors, RuntimeError for shapes)
    check_input = nn.RNNBase.check_input
    get_expected_hidden_size = nn.RNNBase.get_expected_hidden_size
    check_hidden_size = nn.RNNBase.check_hidden_size
    check_forward_args = nn.RNNBase.check_forward_args
    permute_hidden = nn.RNNBase.permute_hidden

    def __getstate__(self):
        return options_as_tuple(self)

    def __setstate__(self, state) -> None:
        super().__setstate__(options_from_tuple(state))

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, n) for n in names] for names in self._weight_names]

    @property
    def _flat_weights_names(self) -> list[str]:
        """Every parameter name, layer by layer and direction by direction, as torch.nn lists them (code
        written for torch.nn zips them with ``_flat_weights``); the layer-norm ones follow each layer's."""
        return [n for names in self._weight_names for n in names]

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, n) for n in self._flat_weights_names]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.cell == "rnn_relu":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        s += options_repr(self)
        if self.engine != "auto":
            s += f", engine={self.engine!r}"
        return s

    # -- helpers --------------------------------------------------------------------------------
    @property
    def _owner(self) -> str:
        return f"rnnkit.{type(self).__name__}"

    def _check_engine(self, engine: str) -> None:
        if engine not in ENGINES:
            raise ValueError(f"rnnkit.{type(self).__name__}: unknown engine {engine!r}; expected one of {ENGINES}")

    def layer_weights(self) -> list[LayerWeights]:
        """The parameters of every layer-direction, in the order the engines expect."""
        out = []
        for names in self._weight_names:
            p = {n.rsplit("_l", 1)[0]: getattr(self, n) for n in names}
            out.append(LayerWeights(*(p.get(role) for role in _ROLES)))
        return out

    def _state_shapes(self, batch: int) -> list[tuple[int, ...]]:
        LD = self.num_layers * (2 if self.bidirectional else 1)
        shapes = [(LD, batch, self.proj_size or self.hidden_size)]
        if self.cell == "lstm":
            shapes.append((LD, batch, self.hidden_size))
        return shapes

    def _prepare_state(self, hx, batch: int, batched: bool, ref: Tensor):
        """Zero state when ``hx`` is None, else check it; returns it batched, (L·D, B, ·)."""
        shapes = self._state_shapes(batch)
        names = ("h_0", "c_0")
        if hx is None:
            zeros = [ref.new_zeros(s) for s in shapes]
            return tuple(zeros) if self.cell == "lstm" else zeros[0]
        if self.cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{self._owner}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            states = list(hx)
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{self._owner}: hx must be a Tensor h_0, got a {type(hx).__name__}")
            states = [hx]
        out = []
        for name, s, shape in zip(names, states, shapes):
            s = autocast_input(s, ref.dtype)
            check_tensor(self._owner, name, s, ref.dtype, ref.device)
            if not batched:
                if s.dim() != 2:
                    raise InputError(
                        f"{self._owner}: for unbatched 2-D input, {name} must be 2-D {(shape[0], shape[2])}, "
                        f"got {s.dim()}-D with shape {tuple(s.shape)}"
                    )
                s = s.unsqueeze(1)
            check_shape(self._owner, name, s if batched else s.squeeze(1), shape if batched else (shape[0], shape[2]))
            if s.is_inference() and torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
                s = s.clone()  # a state computed under inference_mode, fed to a call autograd records
            out.append(s)
        return tuple(out) if self.cell == "lstm" else out[0]

    # -- forward --------------------------------------------------------------------------------
    def forward(self, input, hx=None, *, lengths=None):
        """Run the stack. Returns ``(output, h_n)`` — ``(output, (h_n, c_n))`` for LSTM — in the format of
        the input: a ``PackedSequence`` for packed input, batch-first when ``batch_first``, unbatched for
        2-D input."""
        owner = self._owner
        self._check_engine(self.engine)
        if getattr(input.data if isinstance(input, PackedSequence) else input, "is_cuda", False):
            self._keep_flat()
        w0 = self.weight_ih_l0
        weights = self.layer_weights()
        packed = isinstance(input, PackedSequence)
        arrived = autocast_arrival(input.data if packed else input, hx)
        if packed:
            input = PackedSequence(autocast_input(input.data, w0.dtype), input.batch_sizes, input.sorted_indices,
                                   input.unsorted_indices)
            if lengths is not None:
                raise ValueError(f"{owner}: lengths= is for padded input; a PackedSequence carries its own lengths")
            data = input.data
            check_tensor(owner, "input", data, w0.dtype, w0.device)
            if data.dim() != 2 or data.shape[1] != self.input_size:
                raise InputError(f"{owner}: PackedSequence data must have shape (N, {self.input_size}), "
                                 f"got {tuple(data.shape)}")
            B = int(input.batch_sizes[0])
            state = self._prepare_state(hx, B, True, data)
            done = dispatch.run_packed(self.engine, self.cell, input, state, weights, self.num_layers,
                                       self.bidirectional, self.dropout, self.training, self.options, arrived)
            if done is not None:  # the engine ran on the packed rows themselves
                return PackedSequence(done[0], input.batch_sizes, input.sorted_indices, input.unsorted_indices), done[1]
            x, lengths = pad_packed_sequence(input)  # (T, B, I), lengths in batch order
            packed_lengths = lengths
            batched = True
        else:
            input = autocast_input(input, w0.dtype)
            check_tensor(owner, "input", input, w0.dtype, w0.device)
            if input.dim() not in (2, 3):
                raise InputError(f"{owner}: expected input to be 2-D (unbatched: T, I) or 3-D (batched), "
                                 f"got {input.dim()}-D with shape {tuple(input.shape)}")
            if input.shape[-1] != self.input_size:
                raise InputError(f"{owner}: input has {input.shape[-1]} features in its last dimension, "
                                 f"expected input_size={self.input_size}")
            batched = input.dim() == 3
            if not batched:
                if lengths is not None:
                    raise ValueError(f"{owner}: lengths= needs batched 3-D input")
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
            if x.shape[0] == 0:
                raise InputError(f"{owner}: input has no time steps (shape {tuple(input.shape)})")
            state = self._prepare_state(hx, x.shape[1], batched, x)
        T, B = x.shape[0], x.shape[1]
        if lengths is not None:
            lengths = check_lengths(owner, lengths, B, T)
            if bool((lengths == T).all()):
                lengths = None  # all full length: the plain path is the same computation
        y, state = dispatch.run(self.engine, self.cell, x, state, weights, lengths, self.num_layers,
                                self.bidirectional, self.dropout, self.training, self.options, arrived)

        if packed:
            order = input.sorted_indices
            y_sorted = y if order is None else y.index_select(1, order)
            lengths_sorted = packed_lengths if order is None else packed_lengths.index_select(0, order.cpu())
            data = pack_padded_sequence(y_sorted, lengths_sorted, enforce_sorted=True).data
            out = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif not batched:
            out = y.squeeze(1)
            state = tuple(s.squeeze(1) for s in state) if self.cell == "lstm" else state.squeeze(1)
        else:
            out = y.transpose(0, 1) if self.batch_first else y
        return out, state


class RNN(RNNBase):
    r"""Elman RNN: ``h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` with φ = tanh or ReLU.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None, *, engine='auto')`` — see the module
    docstring for shapes; the cell math is in ``rnnkit/cells/rnn.py``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, proj_size=0, engine="auto", **options):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"rnnkit.RNN: unknown nonlinearity {nonlinearity!r}; expected one of {NONLINEARITIES}")
        self.nonlinearity = nonlinearity
        super().__init__(f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype, engine=engine, **options)


class LSTM(RNNBase):
    r"""Long short-term memory, with torch's optional output projection (``proj_size``).

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, device=None, dtype=None, *, engine='auto')``; forward returns
    ``(output, (h_n, c_n))``. The cell math is in ``rnnkit/cells/lstm.py``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None, *, engine="auto", **options):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype, engine=engine, **options)

    get_expected_cell_size = nn.LSTM.get_expected_cell_size  # (torch.nn.LSTM's helpers: see RNNBase)
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden


class GRU(RNNBase):
    r"""Gated recurrent unit (torch's formulation: the reset gate multiplies W_hn h + b_hn).

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None, *, engine='auto')``. The cell math is in
    ``rnnkit/cells/gru.py``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, *, proj_size=0, engine="auto", **options):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype, engine=engine, **options)
