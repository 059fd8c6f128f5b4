"""torch.nn-compatible recurrent layers and cells."""
from .cells import GRUCell, LSTMCell, RNNCell
from .dropout import EmbeddingDropout, LockedDropout
from .recurrent import GRU, LSTM, RNN, RNNBase

__all__ = ["RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "EmbeddingDropout", "LockedDropout"]
