"""Step a recurrent layer through the readable cells, keeping every state so autograd can reach it.

The fused engine never materialises h_t as separate tensors, and torch.nn's kernels hide them
altogether. To measure ∂L/∂h_t we rerun the layer's *own* parameters (``layer.layer_weights()``,
no copies) one step at a time through the cell functions of ``rnnkit.cells`` — the same loop as the
reference engine, without its option masks — and keep each h_t (and the LSTM's C_t). Every diagnostic that needs per-step
states (gradient flow, gate saturation) is built on :func:`step_layer`, and it is checked against the
layer itself: the stepped output must equal ``layer(x)`` (tests/diagnostics/test_gradients.py).

What is modelled: any ``rnnkit.RNN``/``LSTM``/``GRU`` (and ``torch.nn`` twins through the same
parameter names), any number of layers, bidirectional, LSTM projections, ``layer_norm=True``, and zoneout
at its eval-mode expectation (h_t = p h_{t-1} + (1 − p) h̃_t, C_t likewise). Dropout of every kind is not
applied: the stepped pass is the layer's eval-mode function, and ``check_against_layer`` makes sure of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..cells import LayerNormParams, gru_cell, lstm_cell, rnn_cell
from ..engine.types import LayerWeights


@dataclass
class SteppedRun:
    """All the states of one stepped forward pass (time-major, T steps, L·D layer-directions).

    ``inputs[k]`` (T, B, I_k): what layer-direction k read (layer l reads layer l − 1's outputs).
    ``h[k][t]`` (B, H_out): h_t of layer-direction k after step t (time order, also for reverse).
    ``c[k][t]`` (B, H): the LSTM cell state C_t, else ``c`` is None.
    ``h0[k]`` / ``c0[k]``: initial states. ``output`` (T, B, D·H_out): the last layer's outputs.
    ``names[k]``: "l0", "l0_reverse", … as in the parameter names. ``alive`` (T, B) bool: the real steps of
    a padded batch run with ``lengths`` (past its end a row's state stays as it was, and its outputs are
    zero), else None. ``c_cell[k][t]``: with ``lengths``, C_t as the cell made it (h_t is computed from
    it, not from the state carried on, which past a row's end is the old one): the tensor whose gradient
    is the total ∂L/∂C_t of the rows alive at t; else None (``c`` is that tensor).
    """

    mode: str
    names: list[str]
    inputs: list[Tensor]
    h: list[list[Tensor]]
    c: list[list[Tensor]] | None
    h0: list[Tensor]
    c0: list[Tensor] | None
    output: Tensor
    reverse: list[bool]
    alive: Tensor | None = None
    c_cell: list[list[Tensor]] | None = None


def layer_norm_of(w: LayerWeights) -> LayerNormParams | None:
    """The layer-norm gains and biases of a ``layer_norm=True`` layer-direction, else None."""
    return LayerNormParams(*w[5:]) if w.layer_norm else None


def cell_step(mode: str, x_t: Tensor, state, w: LayerWeights):
    """One step of the cell of ``mode`` with the layer's weights, layer norm included (masks are not:
    the stepped pass is the eval-mode function)."""
    if mode == "lstm":
        return lstm_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr, norm=layer_norm_of(w))
    if mode == "gru":
        return gru_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, norm=layer_norm_of(w))
    return rnn_cell(x_t, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh, nonlinearity=mode[4:])


def layer_mode(layer: nn.Module) -> str:
    """The engine mode ("lstm", "gru", "rnn_tanh", "rnn_relu") of an rnnkit or torch.nn layer."""
    mode = getattr(layer, "mode", None)
    if mode in ("LSTM", "GRU"):  # torch.nn spells them upper case
        return mode.lower()
    if mode == "RNN_TANH":
        return "rnn_tanh"
    if mode == "RNN_RELU":
        return "rnn_relu"
    if mode in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        return mode
    raise TypeError(f"rnnkit.diagnostics: expected an RNN, LSTM or GRU layer, got {type(layer).__name__}")


def weights_of(layer: nn.Module) -> list[LayerWeights]:
    """Per layer-direction weights: ``layer.layer_weights()`` for rnnkit, read by name for torch.nn."""
    if hasattr(layer, "layer_weights"):
        return layer.layer_weights()
    out = []
    D = 2 if layer.bidirectional else 1
    for k in range(layer.num_layers * D):
        sfx = f"_l{k // D}{'_reverse' if k % D else ''}"
        get = lambda n: getattr(layer, n + sfx, None)  # noqa: E731
        out.append(LayerWeights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")))
    # torch.nn has no layer norm: the ln_* fields stay None
    return out


def call_layer(layer: nn.Module, x: Tensor, hx=None, lengths=None):
    """``layer(x, hx)``, with ``lengths=`` when given (an rnnkit layer's padded-batch argument)."""
    return layer(x, hx) if lengths is None else layer(x, hx, lengths=lengths)


def check_input(owner: str, layer: nn.Module, x, lengths) -> None:
    """A padded 3-D batch (a PackedSequence is named: the stepped loop reads a padded one and its lengths);
    ``lengths=`` only for rnnkit's layers, which take it."""
    if isinstance(x, nn.utils.rnn.PackedSequence):
        raise TypeError(f"rnnkit.diagnostics.{owner}: x is a PackedSequence; pass the padded batch and its lengths "
                        f"instead: x, lengths = torch.nn.utils.rnn.pad_packed_sequence(packed, batch_first=...)")
    if not isinstance(x, Tensor) or x.dim() != 3:
        got = f"{x.dim()}-D with shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"rnnkit.diagnostics.{owner}: expected a batched 3-D input, got {got}")
    if lengths is not None and not hasattr(layer, "layer_weights"):
        raise TypeError(f"rnnkit.diagnostics.{owner}: lengths= needs an rnnkit layer (a torch.nn layer takes a "
                        f"PackedSequence instead; its weights load into rnnkit's: load_state_dict)")


def step_layer(layer: nn.Module, x: Tensor, hx=None, lengths=None) -> SteppedRun:
    """Run ``layer`` step by step over ``x`` with its own weights, keeping every state.

    ``x``: (T, B, I), or (B, T, I) when ``layer.batch_first``; ``hx`` as the layer takes it, or None
    for zeros; ``lengths`` (B,): the real steps of each row of a padded batch, as the layer's ``lengths=``
    takes them (a row's state stays as it was past its end, a reverse direction starts at its last real
    step, and outputs past the end are zero). The returned states are part of the autograd graph of
    ``layer``'s parameters and ``x``.
    """
    mode = layer_mode(layer)
    check_input("step_layer", layer, x, lengths)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the layer's own checks of x, hx and lengths,
        call_layer(layer, x, hx, lengths)  # in its words (the steps below would fail inside torch's products)
    xs = x.transpose(0, 1) if layer.batch_first else x  # (T, B, I)
    T, B = xs.shape[0], xs.shape[1]
    alive = None
    if lengths is not None:  # (T, B): step t of row b is real
        lengths = torch.as_tensor(lengths, device="cpu").to(xs.device, torch.int64)
        alive = torch.arange(T, device=xs.device).unsqueeze(1) < lengths.unsqueeze(0)
    D = 2 if layer.bidirectional else 1
    L = layer.num_layers
    lstm = mode == "lstm"
    h_out = getattr(layer, "proj_size", 0) or layer.hidden_size
    if hx is None:
        h0_all = xs.new_zeros(L * D, B, h_out)
        c0_all = xs.new_zeros(L * D, B, layer.hidden_size) if lstm else None
    else:
        h0_all, c0_all = hx if lstm else (hx, None)

    weights = weights_of(layer)
    options = getattr(layer, "options", None)  # zoneout at its eval-mode expectation, as the layer in eval mode
    z_h = float(options.zoneout) if options is not None else 0.0
    z_c = float(options.zoneout_cell) if options is not None and lstm else 0.0
    names, inputs, hs, cs, h0s, c0s, rev, cells_made = [], [], [], [], [], [], [], []
    inp = xs
    for layer_idx in range(L):
        outs = []
        for d in range(D):
            k = layer_idx * D + d
            w = weights[k]
            state = (h0_all[k], c0_all[k]) if lstm else h0_all[k]
            h_list: list[Tensor] = [xs.new_empty(0)] * T
            c_list: list[Tensor] = [xs.new_empty(0)] * T
            made: list[Tensor] = [xs.new_empty(0)] * T  # (with lengths: each C_t as the cell made it)
            for t in (range(T - 1, -1, -1) if d else range(T)):
                new = cell_step(mode, inp[t], state, w)
                if z_h or z_c:  # h_t = p h_{t-1} + (1 − p) h̃_t, and C_t likewise
                    new = (torch.lerp(new[0], state[0], z_h), torch.lerp(new[1], state[1], z_c)) if lstm else \
                        torch.lerp(new, state, z_h)
                if alive is not None:  # a row past its end keeps its state (backward: has not begun)
                    if lstm:
                        made[t] = new[1]
                    a = alive[t].unsqueeze(1)
                    new = (torch.where(a, new[0], state[0]), torch.where(a, new[1], state[1])) if lstm else \
                        torch.where(a, new, state)
                state = new
                if lstm:
                    h_list[t], c_list[t] = state
                else:
                    h_list[t] = state
            names.append(f"l{layer_idx}{'_reverse' if d else ''}")
            inputs.append(inp)
            hs.append(h_list)
            cs.append(c_list)
            cells_made.append(made)
            h0s.append(h0_all[k])
            c0s.append(c0_all[k] if lstm else None)
            rev.append(bool(d))
            out = torch.stack(h_list)  # (T, B, H_out)
            outs.append(out if alive is None else out * alive.unsqueeze(2))  # (zero past each end)
        inp = outs[0] if D == 1 else torch.cat(outs, dim=2)
    return SteppedRun(mode, names, inputs, hs, cs if lstm else None, h0s, c0s if lstm else None, inp, rev, alive,
                      cells_made if lstm and alive is not None else None)


def check_against_layer(layer: nn.Module, x: Tensor, run: SteppedRun, hx=None, lengths=None) -> None:
    """Raise if the stepped output differs from ``layer(x)`` (with ``lengths``) in eval mode — e.g. a
    layer that computes something the stepped cells do not (a subclass's own forward, say)."""
    was_training = layer.training
    layer.eval()
    try:
        with torch.no_grad():
            y, _ = call_layer(layer, x, hx, lengths)
    finally:
        layer.train(was_training)
    y = y.transpose(0, 1) if layer.batch_first else y
    tol = {"rtol": 1e-7, "atol": 1e-9} if y.dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    if not torch.isfinite(y).all():
        raise ValueError(f"rnnkit.diagnostics: {type(layer).__name__}'s output holds NaN or inf: its weights or "
                         f"its input are not finite")
    if not torch.allclose(run.output.detach(), y, **tol):
        diff = (run.output.detach() - y).abs().max().item()
        raise ValueError(
            f"rnnkit.diagnostics: stepping {type(layer).__name__} through rnnkit.cells does not reproduce its "
            f"output (max difference {diff:.3g}); the layer uses an option the stepped cells do not model. Pass "
            f"check=False to measure the stepped function anyway."
        )
