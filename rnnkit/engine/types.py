"""Small shared types of the engines: one layer-direction's weights, its per-call extras, the state."""
from __future__ import annotations

from typing import NamedTuple, Union

from torch import Tensor

from ..cells.norm import EPS as LN_EPS  # noqa: F401  (the engines' layer-norm epsilon)

#: h (B, H) for RNN and GRU; (h, c) for LSTM.
State = Union[Tensor, tuple[Tensor, Tensor]]

#: The recurrent cell kinds, named as torch names its modes (lower case).
MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")


class LayerWeights(NamedTuple):
    """One layer-direction's parameters in torch's layout and gate order.

    ``w_ih`` (G·H, I), ``w_hh`` (G·H, H or P), ``b_ih``/``b_hh`` (G·H,) or None, ``w_hr`` (P, H) or None,
    with G = 4 (LSTM), 3 (GRU) or 1 (RNN). The first five are torch's; the rest exist with
    ``layer_norm=True``: gain and bias of the layer norm of the input part (G·H,), of the recurrent
    part (G·H,), and (LSTM) of the cell state (H,).
    """

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None
    w_hr: Tensor | None = None
    ln_ih_w: Tensor | None = None
    ln_ih_b: Tensor | None = None
    ln_hh_w: Tensor | None = None
    ln_hh_b: Tensor | None = None
    ln_c_w: Tensor | None = None
    ln_c_b: Tensor | None = None

    @property
    def torch_weights(self) -> tuple:
        """The parameters torch's own kernels know, in their flat order."""
        return tuple(w for w in self[:5] if w is not None)

    @property
    def layer_norm(self) -> bool:
        return self.ln_ih_w is not None


class Noise(NamedTuple):
    """The random masks of one layer-direction for one forward call (all optional).

    ``recurrent`` (B, H_out): multiplies h_{t-1} where it enters the gates (variational recurrent
    dropout; already scaled by 1/(1 − q)). ``zone_h`` (T, B, H_out) and ``zone_c`` (T, B, H): the
    probability-or-indicator that a unit *keeps its previous value* (zoneout) — 0/1 draws in
    training, the constant p in eval (the expectation); a float stands for a constant tensor.
    """

    recurrent: Tensor | None = None
    zone_h: Tensor | float | None = None
    zone_c: Tensor | float | None = None


class Options(NamedTuple):
    """The sequence-regularisation options of a stack (see ``rnnkit.layers.recurrent``).

    ``dropout_kind``: how the masks of ``dropout`` between layers are drawn — "naive" (new mask every
    step, torch's), "locked" (one per sequence), "variational" (locked, plus ``recurrent_dropout`` on
    h_{t-1}); ``weight_drop``: DropConnect on W_hh once per forward; ``zoneout``/``zoneout_cell``:
    probability that a unit of h (of the LSTM cell state) keeps its previous value.
    """

    dropout_kind: str = "naive"
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    zoneout: float = 0.0
    zoneout_cell: float = 0.0

    @property
    def needs_rnnkit_engine(self) -> tuple[str, ...]:
        """The options set here that torch's own kernels cannot run."""
        names = []
        if self.dropout_kind != "naive":
            names.append(f"dropout_kind={self.dropout_kind!r}")
        for name in ("recurrent_dropout", "zoneout", "zoneout_cell"):
            if getattr(self, name):
                names.append(name)
        return tuple(names)
