"""Typed model configurations: one dataclass per model, checked field by field, rebuilt from JSON.

Every model in ``rnnkit.models`` is built from keyword arguments that are exactly the fields of its
config dataclass (the dataclass holds the documented defaults, in one place). ``model.config`` gives a
copy of that dataclass back and ``Model.from_config(cfg_or_dict)`` rebuilds the model, so a checkpoint
only needs ``dataclasses.asdict(model.config)`` as JSON plus the model-type name (see ``MODEL_TYPES``).

The checks here are generic: each field's value must match its annotation (``int``, ``float``,
``bool``, ``str``, ``Literal[...]``, ``X | None``, ``tuple[int, ...]``). A dict read back from JSON has
lists where the dataclass has tuples; ``config_from_dict`` turns them back.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
import warnings
from typing import Any, ClassVar, Literal, Mapping, Union

import torch
from torch import nn

from ..engine import ENGINES
from ..layers.init import INITS
from ..layers.recurrent import DROPOUT_KINDS, check_options
from ..engine.precision import own_precision

#: The recurrent cell kinds a model can be built from (the names ``rnnkit.engine`` uses).
Cell = Literal["lstm", "gru", "rnn_tanh", "rnn_relu"]
#: ``engine=`` of the rnnkit layers.
Engine = Literal[ENGINES]
#: ``dropout_kind=`` and ``init=`` of the rnnkit layers.
DropoutKind = Literal[DROPOUT_KINDS]
Init = Literal[INITS]


@dataclasses.dataclass(kw_only=True)
class RecurrentOptions:
    """The sequence-regularisation and variant options of rnnkit's layers, given to every recurrent layer of
    a model (``rnnkit.layers.recurrent`` has their meaning; a model's ``dropout`` stays its own):

    dropout_kind: how the masks of ``dropout`` between stacked recurrent layers are drawn, "naive" (new at
      every step) | "locked" (one per sequence) | "variational" (locked, and ``recurrent_dropout`` on h_{t-1});
      None: "variational" with recurrent_dropout, else "naive" (None). The model's dropout on its
      embeddings and before its output layer stays a new mask at every step.
    recurrent_dropout: one mask per sequence on h_{t-1} where it enters the gates (0.0).
    weight_drop: DropConnect on every W_hh, one mask per forward call (0.0).
    zoneout: keep each unit of h at its previous value with this probability (0.0); zoneout_cell: the same
      for the LSTM cell state (None: as zoneout).
    layer_norm: layer-normalised LSTM/GRU (False). init: "torch" | "orthogonal" | "identity" ("torch").
    forget_bias: the LSTM's forget-gate bias (None: torch's draw).
    In eval mode, and so in generation, every mask is off and zoneout takes its expectation.
    """

    dropout_kind: DropoutKind | None = None
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    zoneout: float = 0.0
    zoneout_cell: float | None = None
    layer_norm: bool = False
    init: Init = "torch"
    forget_bias: float | None = None

    def recurrent_options(self) -> dict[str, Any]:
        """The options as keyword arguments of ``rnnkit.RNN/LSTM/GRU``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RecurrentOptions)}

    def check_recurrent_options(self, cell: str) -> None:
        """The layers' own checks (probabilities in [0, 1), options the cell has), named after this config, and
        ``engine="native"`` against the options torch's kernels can never run (found at the first training step
        otherwise, after the data was read)."""
        name = type(self).__name__
        with warnings.catch_warnings():  # (the layers warn once, at the user's line, when the model builds them)
            warnings.simplefilter("ignore")
            check_options(name, cell, bias=True, **self.recurrent_options())
        if getattr(self, "engine", "auto") == "native":
            lacking = [n for n in ("recurrent_dropout", "zoneout", "zoneout_cell", "layer_norm") if getattr(self, n)]
            if lacking:
                raise ValueError(f"{name}: engine='native' (torch's kernels) cannot run {', '.join(lacking)}; use "
                                 f"engine='auto' or 'fused'")

    @property
    def per_sequence_masks(self) -> bool:
        """Whether a training call draws masks meant to hold for a whole sequence (recurrent dropout, locked
        masks between layers, weight-drop): a model that runs its layer one step per call cannot keep them."""
        locked = self.dropout_kind in ("locked", "variational") and getattr(self, "dropout", 0) > 0 \
            and getattr(self, "num_layers", 1) > 1
        return self.recurrent_dropout > 0 or self.weight_drop > 0 or locked


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a tuple of {_describe(args[0])}"
    return "None" if hint is type(None) else hint.__name__


def _matches(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is tuple:  # only tuple[X, ...] is used by the configs
        return isinstance(value, tuple) and all(_matches(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:  # an int is a fine float (``dropout=0``); a bool is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def check_types(cfg) -> None:
    """Raise a TypeError (ValueError for a ``Literal`` choice) naming the first field whose value does
    not match its annotation."""
    name = type(cfg).__name__
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, hint = getattr(cfg, f.name), hints[f.name]
        if not _matches(value, hint):
            choice = any(typing.get_origin(h) is Literal for h in (hint, *typing.get_args(hint)))
            # a wrong choice (also of an optional choice), else a wrong type
            exc = ValueError if typing.get_origin(hint) is Literal or (choice and isinstance(value, str)) else TypeError
            raise exc(f"{name}: {f.name} must be {_describe(hint)}, got {value!r}")


def check_positive(cfg, *names: str) -> None:
    for n in names:
        value = getattr(cfg, n)
        if value is not None and value <= 0:
            raise ValueError(f"{type(cfg).__name__}: {n} must be > 0, got {value}")


def check_dropout(cfg, name: str = "dropout") -> None:
    value = getattr(cfg, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{type(cfg).__name__}: {name} must be in [0, 1), got {value}")


def config_from_dict(config_class: type, data: Mapping[str, Any]):
    """Build ``config_class`` from a mapping (e.g. parsed JSON): unknown keys are an error, lists become
    tuples where the field is a tuple, and the dataclass's own checks run as usual."""
    hints = typing.get_type_hints(config_class)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TypeError(f"{config_class.__name__}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    kwargs = {}
    for key, value in data.items():
        tuple_field = any(typing.get_origin(a) is tuple for a in (hints[key], *typing.get_args(hints[key])))
        kwargs[key] = tuple(value) if tuple_field and isinstance(value, list) else value
    return config_class(**kwargs)


def inference(method):
    """Run a model method in eval mode (no dropout) without gradients and in the parameters' own precision
    (an enclosing ``torch.autocast`` is switched off: the packed step kernels read float32 weights and
    states), restoring after it every submodule's own mode (a part the user froze stays in eval mode)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with torch.no_grad(), own_precision(next(self.parameters())):
                return method(self, *args, **kwargs)
        finally:
            for m, training in modes:
                m.training = training

    return run


class ConfiguredModel(nn.Module):
    """Base of the models: keyword arguments → the config dataclass → ``build(config)``.

    Subclasses set ``config_class`` and implement ``build``; their constructor signature (what
    ``help()`` and ``inspect.signature`` show) is the config dataclass's, keyword-only.
    """

    config_class: ClassVar[type]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        params = inspect.signature(cls.config_class).parameters.values()
        cls.__signature__ = inspect.Signature([p.replace(kind=p.KEYWORD_ONLY) for p in params])

    def __init__(self, **options) -> None:
        super().__init__()
        self._config = self.config_class(**options)
        self.build(self._config)

    def build(self, config) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __getstate__(self) -> dict:
        """``copy.deepcopy`` and ``torch.save`` of the whole model: without the generation kernel's packed
        weights (``_kernel``, not state: oneDNN's packed tensors cannot be copied or pickled, and the kernel
        is rebuilt from the weights on its next use)."""
        state = self.__dict__.copy()
        if state.get("_kernel") is not None:
            state["_kernel"] = None
        return state

    @property
    def config(self):
        """A copy of the config dataclass this model was built from."""
        return dataclasses.replace(self._config)

    @classmethod
    def from_config(cls, config):
        """Rebuild the model (freshly initialised) from its config dataclass or a dict of its fields."""
        if isinstance(config, cls.config_class):
            return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
        if isinstance(config, Mapping):
            return cls.from_config(config_from_dict(cls.config_class, config))
        raise TypeError(
            f"{cls.__name__}.from_config: config must be a {cls.config_class.__name__} or a dict, "
            f"got {type(config).__name__}"
        )
