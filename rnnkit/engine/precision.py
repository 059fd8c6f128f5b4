"""Which precision a computation runs in under ``torch.autocast``: the region's lower-precision dtype, and
the context every engine but ``native`` runs in (the fused backward passes too)."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

__all__ = ["autocast_dtype", "own_precision"]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The lower-precision dtype of an active ``torch.autocast`` region for ``device``'s type, else None."""
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type autocast does not know (e.g. meta)
        return None
    return torch.get_autocast_dtype(device.type) if enabled else None


def own_precision(x: Tensor):
    """A context that switches an enclosing ``torch.autocast`` off for ``x``'s device type (a no-op outside
    one). Every engine but ``native`` runs in it, in the parameters' dtype (the layers cast
    autocast-precision inputs to that dtype first); so do the models' inference methods and the fused
    engine's hand-written backward passes."""
    if autocast_dtype(x.device) is None:
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, enabled=False)
