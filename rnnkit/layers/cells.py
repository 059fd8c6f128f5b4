"""``rnnkit.RNNCell``, ``rnnkit.LSTMCell``, ``rnnkit.GRUCell``: one time step, drop-in for ``torch.nn``.

Same arguments, parameter names (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), initialisation
and return values as torch's cells; the math is the readable step functions of ``rnnkit.cells``.
Input (B, I) or unbatched (I,); state (B, H) or (H,); a missing state is zeros.

Keyword-only variants, as on the layers: ``layer_norm`` (LSTMCell, GRUCell), ``init`` and
``forget_bias`` (LSTMCell), ``zoneout`` (and ``zoneout_cell`` for LSTMCell; a fresh mask every call in
training, the expectation in eval), and ``recurrent_dropout``: a cell sees one step, so the
per-sequence mask is drawn by ``mask = cell.draw_recurrent_mask(B)`` at the start of a sequence and passed
as ``cell(x_t, h, recurrent_mask=mask)`` at every step (it is None in eval mode).

Inside ``torch.autocast`` a cell takes inputs in the autocast's precision and computes in its
parameters' dtype with autocast off, as the layers' engines do (``engine.precision.own_precision``).
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from ..cells import NONLINEARITIES, LayerNormParams, gru_cell, lstm_cell, rnn_cell
from ..engine.precision import own_precision
from .checks import InputError, autocast_input, check_positive_int, check_shape, check_tensor
from .init import assign_weight, init_weights
from .recurrent import check_options, options_as_tuple, options_from_tuple, options_repr


def _in_own_precision(forward):
    """A cell's ``forward`` with an enclosing ``torch.autocast`` switched off (see the module docstring):
    inputs and states in the autocast's precision are cast to the parameters' dtype first, while the
    autocast is still on to say which precision that is."""

    @functools.wraps(forward)
    def run(self, input, hx=None, **kwargs):
        dtype = self.weight_ih.dtype
        input = autocast_input(input, dtype)
        if isinstance(hx, (tuple, list)):  # a plain tuple, a list or a namedtuple (h, c): cast in place of each
            hx = tuple(autocast_input(s, dtype) for s in hx)
        else:
            hx = autocast_input(hx, dtype)
        with own_precision(self.weight_ih):
            return forward(self, input, hx, **kwargs)

    return run


#: Options of the layers that a cell, one step of one layer in one direction, has no use for.
LAYER_ONLY = {"num_layers": "a cell is one layer; stack cells, or use the layer",
              "batch_first": "a cell takes one step (B, I), which has no time dimension",
              "dropout": "it acts between a layer's stacked layers; apply nn.Dropout to the cell's output",
              "dropout_kind": "it chooses how dropout between stacked layers draws its masks",
              "weight_drop": "the layer drops W_hh once per sequence; a cell does not know where one starts",
              "bidirectional": "a cell runs one direction",
              "proj_size": "rnnkit's cells, like torch.nn.LSTMCell, have no projection",
              "engine": "a cell always runs the readable step of rnnkit.cells"}


def _unexpected_message(owner: str, names: list[str]) -> str:
    """The TypeError for keywords a cell does not take: why, for the layers' options; the cell's own otherwise."""
    layer = owner.replace("Cell", "")
    known = [n for n in names if n in LAYER_ONLY]
    if known:
        return "; ".join(f"{owner} takes no {n!r}, an option of the layer {layer} ({LAYER_ONLY[n]})" for n in known)
    own = "bias, nonlinearity, device, dtype" if owner.endswith("RNNCell") else "bias, device, dtype"
    return (f"{owner} got unexpected keyword argument(s) {', '.join(map(repr, names))}; it takes input_size, "
            f"hidden_size, {own} and, keyword-only, recurrent_dropout, zoneout, zoneout_cell, layer_norm, init, "
            "forget_bias (where its cell type has them)")


class _CellBase(nn.Module):
    gates = 1
    cell = "rnn_tanh"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, zoneout_cell: float | None = None,
                 layer_norm: bool = False, init: str = "torch", forget_bias: float | None = None,
                 **unexpected) -> None:
        super().__init__()
        owner = f"rnnkit.{type(self).__name__}"
        if unexpected:
            raise TypeError(_unexpected_message(owner, sorted(unexpected)))
        input_size = check_positive_int(owner, "input_size", input_size)
        hidden_size = check_positive_int(owner, "hidden_size", hidden_size)
        # The user's line is 3 frames up, or 4 when a subclass (RNNCell) has an __init__ of its own.
        stacklevel = 3 if type(self).__init__ is _CellBase.__init__ else 4
        self.options = check_options(owner, self.cell, None, recurrent_dropout, 0.0, zoneout, zoneout_cell,
                                      layer_norm, init, forget_bias, bias, stacklevel)
        self.layer_norm, self.init = bool(layer_norm), str(init)  # (NumPy's too: checked above)
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        factory = {"device": device, "dtype": dtype}
        G = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self._ln_names: list[str] = []
        if layer_norm:
            for part, size in (("ih", G), ("hh", G)) + ((("cell", hidden_size),) if self.gates == 4 else ()):
                for kind in ("weight", "bias"):
                    name = f"ln_{part}_{kind}"
                    setattr(self, name, nn.Parameter(torch.empty(size, **factory)))
                    self._ln_names.append(name)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """By the ``init`` scheme (torch's default: uniform in ±1/√hidden_size); layer-norm gains 1, biases 0.
        A weight reparametrised by ``torch.nn.utils`` (parametrize, weight_norm, prune) gets its value through
        the parameters behind it, as in the layers (``init.assign_weight``)."""
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else []) + self._ln_names
        with torch.no_grad():  # each value made apart, then written in: a reparametrised weight is computed
            values = {n: torch.empty_like(getattr(self, n)) for n in names}
            for name in self._ln_names:
                values[name].fill_(1.0 if "weight" in name else 0.0)
        init_weights(values, self.hidden_size, self.gates, self.init, self.forget_bias)
        for name, value in values.items():
            assign_weight(self, name, value, 1.0 / math.sqrt(self.hidden_size))

    def _norm(self) -> LayerNormParams | None:
        return LayerNormParams(*(getattr(self, n) for n in self._ln_names)) if self.layer_norm else None

    def draw_recurrent_mask(self, batch_size: int) -> Tensor | None:
        """A per-sequence recurrent-dropout mask (B, H), scaled by 1/(1 − q); None in eval or when q = 0."""
        q = self.options.recurrent_dropout
        if not self.training or q == 0:
            return None
        w = self.weight_hh
        return w.new_empty(batch_size, self.hidden_size).bernoulli_(1 - q).div_(1 - q)

    def _check_mask(self, mask, x: Tensor, batched: bool) -> Tensor | None:
        """The recurrent mask, checked: (B, H) for x (B, I) (also (H,) for an unbatched step, as its state)."""
        owner = f"rnnkit.{type(self).__name__}"
        if mask is None:
            if self.training and self.options.recurrent_dropout > 0:
                raise ValueError(f"{owner}: recurrent_dropout={self.options.recurrent_dropout} needs the per-sequence "
                                 "mask: pass recurrent_mask=cell.draw_recurrent_mask(batch_size) at every step")
            return None
        check_tensor(owner, "recurrent_mask", mask, x.dtype, x.device)
        if not batched and mask.dim() == 1:
            check_shape(owner, "recurrent_mask", mask, (self.hidden_size,))  # (named as given: unbatched)
            mask = mask.unsqueeze(0)
        check_shape(owner, "recurrent_mask", mask, (x.shape[0], self.hidden_size))
        return mask

    def _zone(self, p: float, old: Tensor, new: Tensor) -> Tensor:
        """Zoneout: keep the old value with probability p (a fresh draw per call), its expectation in eval."""
        if p == 0:
            return new
        m = old.new_empty(old.shape).bernoulli_(p) if self.training else p
        return m * old + (1 - m) * new

    def __getstate__(self):
        return options_as_tuple(self)  # (see rnnkit.layers.recurrent)

    def __setstate__(self, state) -> None:
        super().__setstate__(options_from_tuple(state))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.cell == "rnn_relu":
            s += ", nonlinearity='relu'"
        return s + options_repr(self)

    def _prepare(self, input: Tensor, hx, n_states: int):
        """Check shapes; return batched input, batched states (zeros if None), and whether it was batched."""
        owner = f"rnnkit.{type(self).__name__}"
        check_tensor(owner, "input", input, self.weight_ih.dtype, self.weight_ih.device)
        if input.dim() not in (1, 2):
            raise InputError(f"{owner}: expected input to be 1-D (unbatched) or 2-D (B, I), got {input.dim()}-D "
                             f"with shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise InputError(f"{owner}: input has {input.shape[-1]} features, expected input_size={self.input_size}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B = x.shape[0]
        if hx is None:
            states = [x.new_zeros(B, self.hidden_size) for _ in range(n_states)]
        else:
            given = list(hx) if n_states == 2 else [hx]
            if n_states == 2 and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"{owner}: hx must be a tuple (h, c), got {type(hx).__name__}")
            states = []
            for name, s in zip(("h", "c"), given):
                check_tensor(owner, name, s, x.dtype, x.device)
                expected = (B, self.hidden_size) if batched else (self.hidden_size,)
                check_shape(owner, name, s, expected)
                states.append(s if batched else s.unsqueeze(0))
        return x, states, batched


class RNNCell(_CellBase):
    """``h' = φ(W_ih x + b_ih + W_hh h + b_hh)``; ``RNNCell(input_size, hidden_size, bias=True,
    nonlinearity='tanh', device=None, dtype=None)``."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None,
                 **options):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"rnnkit.RNNCell: unknown nonlinearity {nonlinearity!r}; expected one of {NONLINEARITIES}")
        self.nonlinearity = nonlinearity
        self.cell = f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, bias, device, dtype, **options)

    @_in_own_precision
    def forward(self, input: Tensor, hx: Tensor | None = None, *, recurrent_mask: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        recurrent_mask = self._check_mask(recurrent_mask, x, batched)
        h_new = rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity,
                         recurrent_mask=recurrent_mask)
        h_new = self._zone(self.options.zoneout, h, h_new)
        return h_new if batched else h_new.squeeze(0)


class LSTMCell(_CellBase):
    """One LSTM step; returns ``(h', c')``. Equations in ``rnnkit/cells/lstm.py``."""

    gates = 4
    cell = "lstm"

    @_in_own_precision
    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None, *,
                recurrent_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, (h, c), batched = self._prepare(input, hx, 2)
        recurrent_mask = self._check_mask(recurrent_mask, x, batched)
        h_new, c_new = lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                                 recurrent_mask=recurrent_mask, norm=self._norm())
        h_new = self._zone(self.options.zoneout, h, h_new)
        c_new = self._zone(self.options.zoneout_cell, c, c_new)
        return (h_new, c_new) if batched else (h_new.squeeze(0), c_new.squeeze(0))


class GRUCell(_CellBase):
    """One GRU step; returns ``h'``. Equations in ``rnnkit/cells/gru.py``."""

    gates = 3
    cell = "gru"

    @_in_own_precision
    def forward(self, input: Tensor, hx: Tensor | None = None, *, recurrent_mask: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        recurrent_mask = self._check_mask(recurrent_mask, x, batched)
        h_new = gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                         recurrent_mask=recurrent_mask, norm=self._norm())
        h_new = self._zone(self.options.zoneout, h, h_new)
        return h_new if batched else h_new.squeeze(0)
