"""Gate saturation: how often each gate sits at the flat ends of its nonlinearity.

A sigmoid gate above 0.9 or below 0.1, or a tanh beyond ±0.9, passes almost no gradient to its
pre-activation (σ' ≤ 0.09, tanh' ≤ 0.19). Saturation is not always bad — a forget gate near 1 is how
an LSTM remembers — but a layer whose candidate and output are mostly saturated learns slowly.

The gates are recomputed, all steps at once, from each step's input x_t and the previous state
h_{t-1} kept by ``stepping.step_layer`` — the same equations as ``rnnkit.cells`` (recomputing is needed
because the cells return only the new state); ``h`` rebuilt from these gates equals the cell's h_t
(tested). Gate names follow the cells: LSTM ``i, f, g, o`` and ``tanh_c`` = tanh(C_t); GRU ``r, z, n``;
RNN ``h`` (tanh) or, for ReLU, the fraction of exact zeros. With ``layer_norm=True`` the gates are those
of the layer-normalised cells (and ``tanh_c`` = tanh(LN(C_t))).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..cells import ln
from .stepping import SteppedRun, check_against_layer, check_input, layer_norm_of, step_layer, weights_of

SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn_tanh": (), "rnn_relu": ()}
TANH_GATES = {"lstm": ("g", "tanh_c"), "gru": ("n",), "rnn_tanh": ("h",), "rnn_relu": ()}


def _previous(states: list[Tensor], first: Tensor, reverse: bool) -> Tensor:
    """(T, B, ·) the state each step starts from: h_{t-1} (or h_{t+1} when running backward)."""
    hs = torch.stack(states)
    if reverse:
        return torch.cat([hs[1:], first.unsqueeze(0)])
    return torch.cat([first.unsqueeze(0), hs[:-1]])


@torch.no_grad()
def gate_activations(layer: nn.Module, run: SteppedRun, k: int) -> dict[str, Tensor]:
    """All gate values of layer-direction ``k``, each (T, B, H), plus ``h`` (T, B, H_out) rebuilt from them."""
    w = weights_of(layer)[k]
    x = run.inputs[k]  # (T, B, I)
    h_prev = _previous(run.h[k], run.h0[k], run.reverse[k])
    gi = x @ w.w_ih.T  # (T, B, G·H)
    gh = h_prev @ w.w_hh.T
    norm = layer_norm_of(w)
    if norm is not None:  # the layer-normalised cells normalise each part over its G·H features
        gi, gh = ln(gi, norm.ih_w, norm.ih_b), ln(gh, norm.hh_w, norm.hh_b)
    if w.b_ih is not None:
        gi, gh = gi + w.b_ih, gh + w.b_hh
    if run.mode == "lstm":
        a_i, a_f, a_g, a_o = (gi + gh).chunk(4, dim=2)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        C_prev = _previous(run.c[k], run.c0[k], run.reverse[k])
        C = f * C_prev + i * g
        tanh_c = torch.tanh(C if norm is None else ln(C, norm.c_w, norm.c_b))
        h = o * tanh_c
        if w.w_hr is not None:
            h = h @ w.w_hr.T
        return {"i": i, "f": f, "g": g, "o": o, "tanh_c": tanh_c, "h": h}
    if run.mode == "gru":
        gi_r, gi_z, gi_n = gi.chunk(3, dim=2)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=2)
        r = torch.sigmoid(gi_r + gh_r)
        z = torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
        return {"r": r, "z": z, "n": n, "h": (1 - z) * n + z * h_prev}
    a = gi + gh
    return {"h": torch.tanh(a) if run.mode == "rnn_tanh" else torch.relu(a)}


@dataclass
class GateStats:
    """Fractions over all steps, batch entries and units. For sigmoid gates ``high`` = P(v > 0.9),
    ``low`` = P(v < 0.1); for tanh ``high`` = P(v > 0.9), ``low`` = P(v < −0.9); ``saturated`` =
    high + low; for ReLU, ``low`` = P(v = 0) (inactive units) and ``high`` = 0."""

    kind: str
    mean: float
    high: float
    low: float

    @property
    def saturated(self) -> float:
        return self.high + self.low


@dataclass
class SaturationReport:
    """``stats[name][gate]`` for every layer-direction name ("l0", "l1_reverse", …)."""

    mode: str
    stats: dict[str, dict[str, GateStats]]

    def table(self) -> str:
        """A markdown table: one row per layer-direction and gate."""
        lines = ["| layer | gate | kind | mean | high | low | saturated |", "|---|---|---|---|---|---|---|"]
        for name, gates in self.stats.items():
            for gate, s in gates.items():
                lines.append(f"| {name} | {gate} | {s.kind} | {s.mean:.3f} | {s.high:.3f} | {s.low:.3f} | "
                             f"{s.saturated:.3f} |")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        return {n: {g: {"kind": s.kind, "mean": s.mean, "high": s.high, "low": s.low, "saturated": s.saturated}
                    for g, s in gates.items()} for n, gates in self.stats.items()}


def gate_saturation(layer: nn.Module, x: Tensor, hx=None, *, lengths=None, sigmoid_threshold: float = 0.9,
                    tanh_threshold: float = 0.9, check: bool = True) -> SaturationReport:
    """Per-gate saturation of an RNN/LSTM/GRU ``layer`` on the batch ``x`` (its input, in its layout).

    A sigmoid gate counts as saturated above ``sigmoid_threshold`` or below 1 − ``sigmoid_threshold``;
    a tanh beyond ±``tanh_threshold``. ``check`` (as in ``gradient_flow``): first make sure the stepped
    cells reproduce the layer's eval-mode output — a layer they do not is refused rather than reported as the
    function it does not compute; layer norm and zoneout (its expectation) are modelled. ``lengths`` (B,): the
    real steps of each row of a padded batch (an rnnkit layer's ``lengths=``): the fractions count those alone.
    """
    if not 0.5 < sigmoid_threshold < 1 or not 0 < tanh_threshold < 1:
        raise ValueError("rnnkit.diagnostics.gate_saturation: sigmoid_threshold must be in (0.5, 1) and "
                         f"tanh_threshold in (0, 1), got {sigmoid_threshold!r} and {tanh_threshold!r}")
    check_input("gate_saturation", layer, x, lengths)
    with torch.no_grad():
        run = step_layer(layer, x, hx, lengths)
    if check:
        check_against_layer(layer, x, run, hx, lengths)
    stats: dict[str, dict[str, GateStats]] = {}
    for k, name in enumerate(run.names):
        acts = gate_activations(layer, run, k)
        if run.alive is not None:  # the real steps only: (n, H) each
            acts = {g: v[run.alive] for g, v in acts.items()}
        gates: dict[str, GateStats] = {}
        for g in SIGMOID_GATES[run.mode]:
            v = acts[g]
            gates[g] = GateStats("sigmoid", float(v.mean()), float((v > sigmoid_threshold).double().mean()),
                                 float((v < 1 - sigmoid_threshold).double().mean()))
        for g in TANH_GATES[run.mode]:
            v = acts[g]
            gates[g] = GateStats("tanh", float(v.mean()), float((v > tanh_threshold).double().mean()),
                                 float((v < -tanh_threshold).double().mean()))
        if run.mode == "rnn_relu":
            v = acts["h"]
            gates["h"] = GateStats("relu", float(v.mean()), 0.0, float((v == 0).double().mean()))
        stats[name] = gates
    return SaturationReport(run.mode, stats)
