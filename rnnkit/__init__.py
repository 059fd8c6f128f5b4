"""rnnkit — recurrent neural networks for PyTorch, from the equations to working applications.

``rnnkit.RNN``, ``rnnkit.LSTM``, ``rnnkit.GRU`` and their cells are drop-in replacements for the
``torch.nn`` modules of the same names; the math lives in ``rnnkit.cells``, the ways to run a whole
sequence in ``rnnkit.engine``.
"""
from . import clip
from .layers import GRU, LSTM, RNN, EmbeddingDropout, GRUCell, LockedDropout, LSTMCell, RNNCell

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "LockedDropout", "EmbeddingDropout", "clip"]
