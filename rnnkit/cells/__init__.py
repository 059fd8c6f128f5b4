"""The math of one time step, one cell per file. Each function's docstring carries its equations."""
from .gru import gru_cell
from .lstm import lstm_cell
from .rnn import NONLINEARITIES, rnn_cell

__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "NONLINEARITIES"]
from .norm import LayerNormParams, ln  # noqa: E402
