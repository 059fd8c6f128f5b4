"""``rnnkit.RNNCell``, ``rnnkit.LSTMCell``, ``rnnkit.GRUCell``: one time step, drop-in for ``torch.nn``.

Same arguments, parameter names (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), initialisation
and return values as torch's cells; the math is the readable step functions of ``rnnkit.cells``.
Input (B, I) or unbatched (I,); state (B, H) or (H,); a missing state is zeros.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..cells import NONLINEARITIES, gru_cell, lstm_cell, rnn_cell
from .checks import check_positive_int, check_shape, check_tensor


class _CellBase(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        owner = f"rnnkit.{type(self).__name__}"
        check_positive_int(owner, "input_size", input_size)
        check_positive_int(owner, "hidden_size", hidden_size)
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
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: uniform in ±1/√hidden_size."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s

    def _prepare(self, input: Tensor, hx, n_states: int):
        """Check shapes; return batched input, batched states (zeros if None), and whether it was batched."""
        owner = f"rnnkit.{type(self).__name__}"
        check_tensor(owner, "input", input, self.weight_ih.dtype, self.weight_ih.device)
        if input.dim() not in (1, 2):
            raise ValueError(f"{owner}: expected input to be 1-D (unbatched) or 2-D (B, I), got {input.dim()}-D "
                             f"with shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{owner}: input has {input.shape[-1]} features, expected input_size={self.input_size}")
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

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"rnnkit.RNNCell: unknown nonlinearity {nonlinearity!r}; expected one of {NONLINEARITIES}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        h = rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(_CellBase):
    """One LSTM step; returns ``(h', c')``. Equations in ``rnnkit/cells/lstm.py``."""

    gates = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        x, (h, c), batched = self._prepare(input, hx, 2)
        h, c = lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """One GRU step; returns ``h'``. Equations in ``rnnkit/cells/gru.py``."""

    gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        h = gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h if batched else h.squeeze(0)
