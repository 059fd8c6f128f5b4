"""The element-wise work of a fused RNN, LSTM or GRU step as one compiled call (``step_kernels.c``).

Between a step's matrix products the fused loops of ``rnn.py``, ``lstm.py`` and ``gru.py`` apply a chain
of element-wise operations — sigmoids, the cell update, tanh, and with layer normalisation the
normalisations and their gradients. With torch's operators that is 8–14 kernel calls per step for an
LSTM or GRU, each a few microseconds of dispatch; ``step_kernels.c`` does a step's chain in one call, one
pass per row. (The vanilla RNN's chain is short — a tanh forwards, tanh' backwards — but with torch's
operators it takes work around it: see ``rnn.py``.)

The library is built with the package (``setup.py``: an optional extension, so an install without a C
compiler still works) and loaded here with ctypes. It is used for CPU tensors in float32 and float64
when it loaded; everywhere else — CUDA, other dtypes, no library, or ``RNNKIT_STEP_KERNELS=0`` in the
environment — the loops run torch's operators, the same computation (the tests hold the two paths,
and the reference cells, to each other). ``disabled()`` switches it off for a block of code.

Every tensor handed over is a CPU matrix with unit column stride (checked by the callers' layout: the
packed blocks and their per-step row slices); ``None`` is passed as a NULL pointer (option off).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["affine_accumulator", "available", "disabled", "usable", "rnn_forward", "rnn_backward", "rnn_rows",
           "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "gru_backward_plain"]

#: Must equal KERNELS_VERSION in step_kernels.c: a library built from another version is not used.
VERSION = 8

_L, _P = ctypes.c_long, ctypes.c_void_p
_SIGNATURES = {  # argument kinds: L a size, flag or row stride, P a pointer, E the layer norm's epsilon
    "rnn_forward_step": "LLL PL PL PL PL",
    "rnn_backward_step": "LLL PL PL PL PL PL PL",
    "rnn_activate": "LLL PL",
    "rnn_backward_rows": "LLL PPPP L",
    "lstm_forward_step": "LL PL PL PP PP PL PL PP PP PL PL PL PL PL PL E",
    "lstm_backward_step": "LL PL PL PL PL PL PL PL PL PPP PL PL PPP PL PPPP PL PL",
    "gru_forward_step": "LL PL PL PP PP PL PL PL E",
    "gru_backward_step": "LL PL PL PL PPP PL PP",
    "gru_backward_plain_step": "LL P PL PL PL PL PL PL PL",
}


def _load():
    """The loaded library's functions by (name, dtype), or None with the reason."""
    if os.environ.get("RNNKIT_STEP_KERNELS", "1") == "0":
        return None, "switched off by RNNKIT_STEP_KERNELS=0"
    found = sorted(Path(__file__).parent.glob("_step_kernels*.so"))
    if not found:
        return None, "not built (no C compiler when the package was installed)"
    try:
        lib = ctypes.CDLL(str(found[0]))
        lib.rnnkit_step_kernels_version.restype = _L
        version = lib.rnnkit_step_kernels_version()
    except (OSError, AttributeError) as e:
        return None, f"{found[0].name} did not load: {e}"
    if version != VERSION:
        warnings.warn(f"rnnkit: {found[0]} is version {version} of the step kernels, this rnnkit expects "
                      f"{VERSION}; it is not used (reinstall rnnkit to rebuild it: make setup, or pip install "
                      f"-e .)", RuntimeWarning, stacklevel=3)
        return None, f"stale build (version {version}, expected {VERSION})"
    table = {}
    for dtype, sfx, real in ((torch.float32, "f32", ctypes.c_float), (torch.float64, "f64", ctypes.c_double)):
        for name, sig in _SIGNATURES.items():
            fn = getattr(lib, f"{name}_{sfx}")
            fn.restype = None
            fn.argtypes = [{"L": _L, "P": _P, "E": real}[c] for c in sig.replace(" ", "")]
            table[name, dtype] = fn
    return table, None


_FUNCTIONS, WHY_NOT = _load()
_enabled = True


def available() -> bool:
    """Whether the compiled step kernels loaded here (``WHY_NOT`` says why not)."""
    return _FUNCTIONS is not None


def usable(t: Tensor) -> bool:
    """Whether a fused loop over tensors like ``t`` runs its steps' element-wise work here."""
    return _enabled and _FUNCTIONS is not None and t.device.type == "cpu" and t.dtype in (torch.float32,
                                                                                           torch.float64)


@contextlib.contextmanager
def disabled():
    """Run the fused loops on torch's operators alone inside the block (tests, benchmarks)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def _m(t: Tensor | None) -> tuple[int | None, int]:
    """A matrix argument: its data pointer (None: NULL) and row stride."""
    return (None, 0) if t is None else (t.data_ptr(), t.stride(0))


def _p(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _pair(t: Tensor | None) -> tuple[int | None, int | None]:
    """A (2, n) float64 accumulator as two pointers (its rows), or two NULLs."""
    if t is None:
        return None, None
    p = t.data_ptr()
    return p, p + t.stride(0) * t.element_size()


def affine_accumulator(n: int, like: Tensor, needed: bool) -> Tensor | None:
    """A zeroed (2, n) float64 block for a norm's gain and bias gradients, summed over steps (None: not needed)."""
    return torch.zeros(2, n, dtype=torch.float64, device=like.device) if needed else None


def rnn_forward(S: Tensor, relu: bool, zh: Tensor | None, hp: Tensor | None, out: Tensor | None) -> None:
    """One vanilla RNN step (``rnn_forward_step`` in step_kernels.c): S (b, H) the pre-activation, replaced by
    h̃ = tanh(S) or relu(S); with zoneout's keeps zh (b, H), out = h̃ + z_h (hp − h̃), hp = h_{t-1}."""
    b, H = S.shape
    _FUNCTIONS["rnn_forward_step", S.dtype](b, H, int(relu), *_m(S), *_m(zh), *_m(hp if zh is not None else None),
                                            *_m(out if zh is not None else None))


def rnn_backward(carry: Tensor | None, dy: Tensor, ht: Tensor, relu: bool, zh: Tensor | None, da: Tensor,
                 kept: Tensor | None) -> None:
    """One vanilla RNN step's gradient at its pre-activation (``rnn_backward_step``): dh = carry + dy (carry
    None: dy), with zoneout's keeps zh kept = dh ∗ z_h and dh ∗ (1 − z_h) going on, times φ' (from h̃ in ht)
    into da; all (b, H)."""
    b, H = da.shape
    _FUNCTIONS["rnn_backward_step", da.dtype](b, H, int(relu), *_m(carry), *_m(dy), *_m(ht), *_m(zh), *_m(da),
                                              *_m(kept if zh is not None else None))


def rnn_rows(dtype: torch.dtype):
    """(activate, backward) without zoneout, with raw arguments, for loops where a wrapper's microsecond a
    step shows: ``activate(b, H, relu, S, s)`` is ``rnn_forward`` on b rows of H values s apart at address S;
    ``backward(b, H, relu, carry, dy, ht, da, s)`` is ``rnn_backward`` on addresses, carry's rows H apart,
    the others' s apart. A contiguous block goes as one row of b·H values."""
    return _FUNCTIONS["rnn_activate", dtype], _FUNCTIONS["rnn_backward_rows", dtype]


def lstm_forward(G: Tensor, A: Tensor | None, lnw: Tensor | None, lnb: Tensor | None, stats_h, cp: Tensor,
                 ct: Tensor, lcw: Tensor | None, lcb: Tensor | None, stats_c, tc: Tensor, out: Tensor,
                 zh: Tensor | None, hp: Tensor | None, zc: Tensor | None, cz: Tensor | None, eps: float) -> None:
    """One LSTM step's gates, cell and output (``lstm_forward_step`` in step_kernels.c), in place: G (b, 4H)
    in the internal layout, A (b, 4H) the recurrent product to normalise or None, ``stats_*`` (mean,
    rstd) (b, 1) views to fill or None, cp/ct/tc/out (b, H); zoneout's keeps zh (with h_{t-1}, hp) and zc
    (into cz) or None."""
    b, H = ct.shape
    mh, rh = stats_h if stats_h is not None else (None, None)
    mc, rc = stats_c if stats_c is not None else (None, None)
    _FUNCTIONS["lstm_forward_step", G.dtype](b, H, *_m(G), *_m(A), _p(lnw), _p(lnb), _p(mh), _p(rh), *_m(cp),
                                             *_m(ct), _p(lcw), _p(lcb), _p(mc), _p(rc), *_m(tc), *_m(out), *_m(zh),
                                             *_m(hp if zh is not None else None), *_m(zc), *_m(cz), eps)


def lstm_backward(dr: Tensor, dcf: Tensor, od: Tensor, M: Tensor, f: Tensor, dcp: Tensor, zc: Tensor | None,
                  ct: Tensor | None, lcw: Tensor | None, stats_c, du: Tensor | None, A: Tensor | None,
                  lnw: Tensor | None, stats_h, dA: Tensor | None, affine_c: Tensor | None,
                  affine_h: Tensor | None, zh: Tensor | None, kept: Tensor | None) -> None:
    """One LSTM step's gate gradients into M and the cell carry into dcp (``lstm_backward_step``); ``affine_*``
    (2, H) / (2, 4H) float64 or None: the cell and recurrent norms' gain and bias gradients, summed into;
    with zoneout's keeps zh, dr ∗ z_h into ``kept`` and dr ∗ (1 − z_h) into dr."""
    b, H = dcp.shape
    mc, rc = stats_c if stats_c is not None else (None, None)
    mh, rh = stats_h if stats_h is not None else (None, None)
    _FUNCTIONS["lstm_backward_step", M.dtype](b, H, *_m(dr), *_m(dcf), *_m(od), *_m(M), *_m(f), *_m(dcp),
                                              *_m(zc), *_m(ct), _p(lcw), _p(mc), _p(rc), *_m(du), *_m(A),
                                              _p(lnw), _p(mh), _p(rh), *_m(dA), *_pair(affine_c), *_pair(affine_h),
                                              *_m(zh), *_m(kept))


def gru_forward(G: Tensor, A: Tensor | None, lnw: Tensor | None, lnb: Tensor | None, stats, ghn: Tensor,
                hp: Tensor, y: Tensor, eps: float) -> None:
    """One GRU step's gates and output (``gru_forward_step``), in place: G (b, 3H), A (b, 3H) or None,
    ghn/hp/y (b, H)."""
    b, H = y.shape
    m, r = stats if stats is not None else (None, None)
    _FUNCTIONS["gru_forward_step", G.dtype](b, H, *_m(G), *_m(A), _p(lnw), _p(lnb), _p(m), _p(r), *_m(ghn),
                                            *_m(hp), *_m(y), eps)


def gru_backward(Q: Tensor, dht: Tensor, A: Tensor, lnw: Tensor, stats, dA: Tensor, affine: Tensor | None) -> None:
    """One layer-normalised GRU step's dGH = Q ∗ dh̃ (in Q) and its gradient before the norm into dA; ``affine``
    (2, 3H) float64 or None: the norm's gain and bias gradients, summed into."""
    b, H = dht.shape
    m, r = stats
    _FUNCTIONS["gru_backward_step", Q.dtype](b, H, *_m(Q), *_m(dht), *_m(A), _p(lnw), _p(m), _p(r), *_m(dA),
                                             *_pair(affine))


def gru_backward_plain(carry: Tensor, dy: Tensor, G: Tensor, ghn: Tensor, hp: Tensor, zh: Tensor | None, Q: Tensor,
                       E: Tensor) -> None:
    """One GRU step's gradients without layer norm (``gru_backward_plain_step``): from carry + dy (b, H), the
    gates G (b, 3H), the n gate's recurrent part ghn and h_{t-1} (hp), and zoneout's keeps zh or None: dGH into
    Q (b, 3H), the gradient of n's input part into E (b, H), and the carry to h_{t-1} before its product term
    into ``carry`` (contiguous rows)."""
    b, H = carry.shape
    _FUNCTIONS["gru_backward_plain_step", Q.dtype](b, H, carry.data_ptr(), *_m(dy), *_m(G), *_m(ghn), *_m(hp), *_m(zh),
                                                   *_m(Q), *_m(E))
