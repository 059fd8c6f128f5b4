"""One row, one token at a time, in numpy: the CPU fast path of generation with a batch of one.

Greedy decoding or sampling of one sequence is pure latency: per token, a matrix-vector product per
weight matrix and a handful of element-wise operations on vectors of a few hundred values. In torch
each of those calls costs microseconds of dispatch, and torch's matrix-vector product (MKL ``sgemv``)
was measured 1.4–2× slower than numpy's OpenBLAS on this machine's AMD CPU at one thread (one row,
float32: 256×768 17 µs vs 8.4 µs, 1024×2048 145 µs vs 103 µs). ``OneRowStep`` runs the step of
``StepKernel`` on numpy views of the kernel's own packed weights (no copy), with preallocated buffers
and in-place ufuncs, so a token costs the weight reads and about a microsecond per operation.

Same equations, same packed layout as ``rnnkit.engine.step`` (LSTM gate columns i, f, o, g; GRU's
input and recurrent products apart; zoneout at its expectation); σ(a) is computed as
½·tanh(½a) + ½. Each layer keeps its input and its state side by side in one buffer ``[x, h]``, so an
LSTM or RNN layer is one product with ``[W_ih; W_hh]ᵀ`` and writing a layer's new h is also writing
the next layer's input.

Threads: numpy's BLAS has its own thread pool, which competes with torch's for the cores (a pool
spinning next to torch's slowed ``nn.LSTM`` 2× in a prototype). ``blas_one_thread()`` holds numpy's BLAS
to one thread for the length of a generation and restores it after; ``available()`` is False when
``threadpoolctl`` cannot see numpy's BLAS, and the models then stay on the torch path. (threadpoolctl
controls every BLAS library it finds in the process — numpy's OpenBLAS here; torch's MKL is linked
statically into its wheels and is not among them.)
"""
from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np
import torch
from torch import Tensor

from .step import StepKernel
from .types import State

__all__ = ["NUMPY_MAX_ELEMENTS", "OneRowStep", "available", "blas_one_thread", "preferred", "supports"]

#: Largest weight (values) for which the numpy step is chosen when torch has more than one thread.
#: Measured, 2 threads, 2-layer LSTM LM, ms/token numpy vs torch: H 512 0.25 vs 0.37; H 768 (largest
#: weight 1536 × 3072 = 4.7M) 0.86 vs 1.04; H 1024 (2048 × 4096 = 8.4M) 1.75 vs 1.62.
NUMPY_MAX_ELEMENTS = 6_000_000


@functools.lru_cache(maxsize=1)
def _blas_controllers() -> tuple:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (found once: the search
    walks the loaded libraries, about a millisecond)."""
    try:
        from threadpoolctl import ThreadpoolController

        return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
    except Exception:  # noqa: BLE001 - no threadpoolctl, or it cannot inspect this process: the torch path
        return ()


def available() -> bool:
    """numpy's BLAS is controllable (so ``blas_one_thread`` can keep it off torch's cores)."""
    return bool(_blas_controllers())


_held = {"depth": 0, "before": []}  # generations inside blas_one_thread now, and the settings to restore
_lock = threading.Lock()


@contextlib.contextmanager
def blas_one_thread():
    """numpy's BLAS on one thread inside the block; each library's own setting is restored when the last
    of any overlapping blocks (generations in several Python threads) ends."""
    controllers = _blas_controllers()
    with _lock:
        if _held["depth"] == 0:
            _held["before"] = [c.get_num_threads() for c in controllers]
            for c in controllers:
                c.set_num_threads(1)
        _held["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _held["depth"] -= 1
            if _held["depth"] == 0:
                for c, n in zip(controllers, _held["before"]):
                    c.set_num_threads(n)


def supports(kernel: StepKernel, state: State) -> bool:
    """Whether ``OneRowStep`` can run ``kernel`` from ``state``: float32/float64 on the CPU, one row, a
    kernel packed with its token embedding and an output layer, not layer-normalised."""
    if kernel.normalised:  # (the readable cells' step: nothing packed for numpy to read)
        return False
    h = state[0] if isinstance(state, tuple) else state
    w = kernel.layers[0].w_h.w
    return (w.device.type == "cpu" and w.dtype in (torch.float32, torch.float64) and h.shape[1] == 1
            and kernel.head is not None and kernel.embedding is not None)


def preferred(kernel: StepKernel) -> bool:
    """Whether ``OneRowStep`` is the faster way to step ``kernel``: always on one torch thread; with
    more, unless a weight exceeds ``NUMPY_MAX_ELEMENTS`` — from there the weights stream from memory,
    and torch's one-row product reading them with every core wins."""
    if torch.get_num_threads() == 1:
        return True
    products = [q for p in kernel.layers for q in (p.w, p.w_x, p.w_h) if q is not None] + [kernel.head]
    return max(q.w.numel() for q in products if q is not None) <= NUMPY_MAX_ELEMENTS


def _view(t: Tensor) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor (the kernel's packed weights: no copy)."""
    return t.detach().numpy()


class OneRowStep:
    """Steps ``kernel`` (a ``StepKernel`` packed with an output layer) for one row, from ``state`` in
    torch's layout: h (L, 1, H) — ``(h, C)`` for LSTM. ``step(token, out=None)`` feeds one token id
    and returns the output layer's logits (V,) as a numpy array, written into ``out`` when given (else
    valid until the next call); ``state()`` gives the current state back as tensors shaped like the
    one passed in."""

    def __init__(self, kernel: StepKernel, state: State) -> None:
        if not supports(kernel, state):
            raise ValueError("rnnkit.engine.step_numpy.OneRowStep: needs a CPU float32/float64 kernel packed with "
                             "its embedding and an output layer, and a state with one row")
        k = self.kernel = kernel
        self.lstm, self.gru, self.relu = k.mode == "lstm", k.mode == "gru", k.mode == "rnn_relu"
        dtype = k.layers[0].w_h.w.numpy().dtype
        H = k.hidden_size
        hs = state[0] if isinstance(state, tuple) else state  # (L, 1, P)
        P = hs.shape[-1]
        self.shape_h = tuple(hs.shape)
        self.H, self.P = H, P
        G = {"lstm": 4, "gru": 3}.get(k.mode, 1) * H
        self.table = None if k.table is None else _view(k.table)
        self.embedding = None if k.embedding is None else _view(k.embedding)
        self.layers = []
        for l, p in enumerate(k.layers):
            I = k.input_size if l == 0 else P
            xh = np.empty(I + P, dtype)  # [x, h]: this layer's input and state side by side
            xh[I:] = hs[l, 0].detach().numpy()
            layer = {"I": I, "xh": xh, "G": np.empty(G, dtype), "b": _view(p.b),
                     "W": None if p.w is None else _view(p.w.w), "W_x": _view(p.w_x.w), "W_h": _view(p.w_h.w),
                     "W_hr": None if p.w_hrT is None else _view(p.w_hrT)}
            if self.lstm:
                layer["C"] = state[1][l, 0].detach().numpy().copy()
                layer["tmp"] = np.empty(H, dtype)
            if self.gru:
                layer["b_h"] = _view(p.b_h)
                layer["GH"] = np.empty(G, dtype)
                layer["GX"] = np.empty(G, dtype)
                layer["n"] = np.empty(H, dtype)
            self.layers.append(layer)
        self.logits = np.empty(k.head.w.shape[1], dtype)
        self.W_out, self.b_out = _view(k.head.w), _view(k.head_bias)
        self.zoneout, self.zoneout_cell = k.zoneout, k.zoneout_cell

    # -- the step -------------------------------------------------------------------------------
    def step(self, token: int, out: np.ndarray | None = None) -> np.ndarray:
        layers = self.layers
        for l, L in enumerate(layers):
            xh, G, I = L["xh"], L["G"], L["I"]
            if l == 0:
                if self.table is not None:  # layer 0's input projection of this token, bias included
                    gx = self.table[token]
                else:
                    xh[:I] = self.embedding[token]
                    gx = None
            else:
                gx = None
            if self.gru:
                h_new = self._gru(L, gx, in_place=not self.zoneout)
            else:
                if gx is None:
                    np.dot(xh, L["W"], out=G)
                    G += L["b"]
                else:
                    np.dot(xh[I:], L["W_h"], out=G)
                    G += gx
                h_new = self._lstm(L) if self.lstm else self._rnn(G)
            h = xh[I:]
            if self.zoneout:  # h ← p·h_{t-1} + (1 − p)·h̃_t
                h_new -= h
                h_new *= 1.0 - self.zoneout
                h += h_new
            elif not self.gru:  # the GRU without zoneout wrote its new h in place
                h[:] = h_new
            if l + 1 < len(layers):
                nxt = layers[l + 1]
                nxt["xh"][: nxt["I"]] = h
        logits = self.logits if out is None else out
        np.dot(layers[-1]["xh"][layers[-1]["I"]:], self.W_out, out=logits)
        logits += self.b_out
        return logits

    @staticmethod
    def _sigmoid_(a: np.ndarray) -> np.ndarray:
        """σ(a) = ½·tanh(½a) + ½, in place."""
        a *= 0.5
        np.tanh(a, out=a)
        a *= 0.5
        a += 0.5
        return a

    def _lstm(self, L) -> np.ndarray:
        H, G, C, tmp = self.H, L["G"], L["C"], L["tmp"]
        ifo, g = G[: 3 * H], G[3 * H:]
        self._sigmoid_(ifo)
        np.tanh(g, out=g)
        i, f, o = ifo[:H], ifo[H : 2 * H], ifo[2 * H:]
        np.multiply(i, g, out=tmp)  # i ∗ g
        if self.zoneout_cell:
            C_t = tmp + f * C  # the cell's own new C; h reads it before zoneout (Krueger et al. 2017)
            C += (1.0 - self.zoneout_cell) * (C_t - C)  # C ← p·C_{t-1} + (1 − p)·C_t
            C_new = np.tanh(C_t, out=tmp)
        else:
            C *= f
            C += tmp  # C_t = f ∗ C_{t-1} + i ∗ g
            C_new = np.tanh(C, out=tmp)
        C_new *= o  # h_t = o ∗ tanh(C_t)
        if L["W_hr"] is not None:
            np.dot(C_new, L["W_hr"], out=L["G"][: self.P])
            return L["G"][: self.P]
        return C_new

    def _rnn(self, a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 0, out=a) if self.relu else np.tanh(a, out=a)

    def _gru(self, L, gx, in_place: bool) -> np.ndarray:
        """The new h; written over the state itself when ``in_place``."""
        H, I, xh, GH, n = self.H, L["I"], L["xh"], L["GH"], L["n"]
        if gx is None:
            gx = L["GX"]
            np.dot(xh[:I], L["W_x"], out=gx)
            gx += L["b"]
        np.dot(xh[I:], L["W_h"], out=GH)
        GH += L["b_h"]
        rz = GH[: 2 * H]
        rz += gx[: 2 * H]
        self._sigmoid_(rz)  # [r, z] = σ(gx_rz + gh_rz)
        r, z = rz[:H], rz[H:]
        np.multiply(r, GH[2 * H:], out=n)
        n += gx[2 * H:]
        np.tanh(n, out=n)  # n = tanh(gx_n + r ∗ gh_n)
        h_new = xh[I:] if in_place else L["G"][:H]
        np.subtract(xh[I:], n, out=h_new)
        h_new *= z
        h_new += n  # h' = n + z ∗ (h − n)
        return h_new

    def state(self) -> State:
        """The current state as tensors in torch's layout, shaped like the state passed in."""
        h = torch.from_numpy(np.stack([L["xh"][L["I"]:] for L in self.layers])).view(self.shape_h)
        if self.lstm:
            C = torch.from_numpy(np.stack([L["C"] for L in self.layers])).view(len(self.layers), 1, self.H)
            return h.clone(), C.clone()
        return h.clone()
