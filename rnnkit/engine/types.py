"""Small shared types of the engines: the weights of one layer in one direction, and the state."""
from __future__ import annotations

from typing import NamedTuple, Union

from torch import Tensor

#: h (B, H) for RNN and GRU; (h, c) for LSTM.
State = Union[Tensor, tuple[Tensor, Tensor]]

#: The recurrent cell kinds, named as torch names its modes (lower case).
MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")


class LayerWeights(NamedTuple):
    """One layer-direction's parameters in torch's layout and gate order.

    ``w_ih`` (G·H, I), ``w_hh`` (G·H, H or P), ``b_ih``/``b_hh`` (G·H,) or None, ``w_hr`` (P, H) or None,
    with G = 4 (LSTM), 3 (GRU) or 1 (RNN).
    """

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None
    w_hr: Tensor | None = None
