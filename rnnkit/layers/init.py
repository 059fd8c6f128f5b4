"""Weight initialisation schemes for the recurrent layers and cells.

- ``"torch"`` (default): every parameter uniform in ±1/√H — torch.nn's rule, so a freshly built rnnkit
  layer is statistically the same as a torch.nn one (and drop-in code keeps its behaviour).
- ``"orthogonal"``: each gate's block of the recurrent matrix W_hh is a random orthogonal matrix (its
  singular values are all 1, so repeated multiplication neither explodes nor vanishes at the start);
  input weights Xavier-uniform per gate; biases zero.
- ``"identity"``: the IRNN recipe of Le, Jaitly & Hinton (2015) — W_hh = I (per gate), biases zero,
  input weights N(0, 0.001²) — meant for ``RNN(nonlinearity="relu")``: with ReLU and an identity
  recurrence the state is copied forward unchanged until learning says otherwise.

``forget_bias`` (LSTM only; default None = leave the scheme's bias): sets the forget gate's total bias
(b_if + b_hf) to the given value, e.g. 1.0 as recommended by Jozefowicz, Zaremba & Sutskever (2015), so
the cell starts out remembering; b_if carries it and b_hf is zeroed.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm

INITS = ("torch", "orthogonal", "identity")


@torch.no_grad()
def init_weights(weights: dict[str, torch.Tensor], hidden_size: int, gates: int, init: str,
                 forget_bias: float | None) -> None:
    """Initialise, in place, one layer-direction's (or one cell's) parameters.

    ``weights`` maps the role — ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``, ``"bias_hh"``,
    ``"weight_hr"``, or any other (e.g. layer-norm gains) — to the tensor.
    """
    H = hidden_size
    bound = 1.0 / math.sqrt(H)
    for role, w in weights.items():
        if role.startswith("ln_"):
            continue  # layer-norm gains and biases keep their (1, 0) start
        if init == "torch" or role == "weight_hr":
            nn.init.uniform_(w, -bound, bound)
        elif role.startswith("bias"):
            w.zero_()
        elif role == "weight_hh":
            for block in w.split(H, dim=0):
                if init == "orthogonal":
                    nn.init.orthogonal_(block)
                else:
                    block.copy_(torch.eye(H, block.shape[1], dtype=block.dtype, device=block.device))
        elif role == "weight_ih":
            for block in w.split(H, dim=0):
                if init == "orthogonal":
                    nn.init.xavier_uniform_(block)
                else:
                    nn.init.normal_(block, 0.0, 1e-3)
    if forget_bias is not None and "bias_ih" in weights:
        weights["bias_ih"][H : 2 * H] = forget_bias
        weights["bias_hh"][H : 2 * H] = 0.0


@torch.no_grad()
def assign_weight(module: nn.Module, name: str, value: torch.Tensor, bound: float) -> None:
    """Write ``value`` as ``module``'s parameter ``name`` into whatever holds it: the Parameter itself, or —
    where ``torch.nn.utils`` reparametrised it — the parameters behind it: a parametrization's originals
    (through its ``right_inverse``; one without it gets its originals uniform in ±``bound``, as torch.nn's
    ``reset_parameters`` gives every parameter), prune's ``name_orig``, the old weight_norm's ``name_g`` and
    ``name_v``. (``getattr(module, name)`` is then a computed tensor: writing into it would change nothing.)"""
    params = module._parameters
    if params.get(name) is not None:
        params[name].copy_(value)
    elif parametrize.is_parametrized(module, name):
        try:
            setattr(module, name, value)
        except RuntimeError:  # no right_inverse
            for p in module.parametrizations[name].parameters():
                nn.init.uniform_(p, -bound, bound)
    elif params.get(f"{name}_orig") is not None:
        params[f"{name}_orig"].copy_(value)
    elif params.get(f"{name}_g") is not None and params.get(f"{name}_v") is not None:
        dim = next((h.dim for h in module._forward_pre_hooks.values()
                    if isinstance(h, WeightNorm) and h.name == name), 0)
        params[f"{name}_v"].copy_(value)
        params[f"{name}_g"].copy_(torch.norm_except_dim(value, 2, dim))
    else:
        raise TypeError(f"{type(module).__name__}.reset_parameters: found no parameter behind {name!r}")
