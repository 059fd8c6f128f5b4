"""How a whole sequence runs: ``reference`` (readable loop, autograd), ``fused`` (hand-written BPTT),
``native`` (torch's kernels), chosen in one place: ``dispatch``."""
from .dispatch import ENGINES, choose_engine, run
from .fused.buffers import release_buffers
from .types import MODES, LayerWeights, Noise, Options

__all__ = ["ENGINES", "MODES", "LayerWeights", "Noise", "Options", "choose_engine", "release_buffers", "run"]
