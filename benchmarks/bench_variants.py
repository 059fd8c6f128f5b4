#!/usr/bin/env python
"""Training-step cost of rnnkit's sequence regularisation and cell variants (issue 3).

For each configuration and cell (LSTM, GRU; 2 layers, I = H, float32) it times one training step —
forward, ``loss = <output, R>`` (R a fixed random tensor), gradients of every parameter and the input —
of these candidates, alternating them in one process (``common.time_alternating``):

- ``plain``: the fused layer with no option (``engine="fused"``);
- each option on the fused layer: ``locked`` (dropout=0.3 between the layers, one mask per sequence),
  ``variational`` (locked dropout 0.3 + recurrent_dropout=0.25), ``weight_drop=0.5``, ``zoneout=0.1``
  (h and, for the LSTM, the cell state), ``layer_norm=True``;
- for every one of them (plain included), the Python loop a practitioner would write today: one
  ``nn.LSTMCell`` / ``nn.GRUCell`` per layer, stepped over time, layer after layer, with

  - locked dropout: one (1, B, H) mask per sequence multiplying the first layer's outputs;
  - variational: the same, plus one (B, H) mask drawn per sequence and layer on h_{t-1} where it enters
    W_hh: ``cell(x_t, (h ∗ m, c))`` for the LSTM; the GRU step written out with the cell's parameters
    (``nn.GRUCell(x_t, h ∗ m)`` would also mask the h_{t-1} of h = (1 − z) n + z h_{t-1}, another
    variant);
  - weight_drop: ``F.dropout`` of W_hh once per forward, then ``torch.lstm_cell`` / ``torch.gru_cell``
    (the kernels nn.LSTMCell / nn.GRUCell call) with the dropped matrix;
  - zoneout: a (B, H) Bernoulli(p) keep mask for every step, drawn for all steps of a layer at once
    (``torch.rand(T, B, H) < p``; for the LSTM then the cell state's), ``h = lerp(h̃, h_{t-1}, m_t)``;
  - layer_norm: nn.LSTMCell can't hold it, so the cell is written out with the cell's parameters and
    three ``nn.LayerNorm``: LN(W_ih x) for all steps at once before the loop (a favour to the
    baseline), then per step LN(W_hh h) + b, the gates, and tanh(LN(c)) — the split of the rnnkit
    docstrings (``rnnkit/cells/lstm.py``, ``gru.py``).

Each row gives the median over rounds of per-round ratios: option time / plain time on the fused
engine (target ≤ 1.3), loop time / fused time, and loop time / the time of the same layer with
``engine="auto"`` (the speed-up a user gets, target ≥ 1.5) — timed separately only where auto picks
another engine (e.g. torch's kernel one layer at a time for an LSTM whose only option is locked
dropout, or the whole stack for weight-drop); elsewhere auto *is* fused. Before timing, each loop is run
with rnnkit's weights and the same seed and must give rnnkit's output (the masks are drawn with the
same calls in the same order); a disagreement prints MISMATCH. The machine is small and shared: the
same case moves by tens of percent between runs, so read the ratios (taken within one round), not the
absolute times.

    .venv/bin/python benchmarks/bench_variants.py                 # B32 T100 H128 and B64 T100 H512 (minutes)
    .venv/bin/python benchmarks/bench_variants.py --quick         # a smoke run, small config only
    .venv/bin/python benchmarks/bench_variants.py --configs small --cells gru --options plain,zoneout
    .venv/bin/python benchmarks/bench_variants.py --threads 1 --timer cpu     # on a busy machine
    .venv/bin/python benchmarks/bench_variants.py --json variants.json
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import rnnkit  # noqa: E402
from common import machine_info, markdown_table, time_alternating  # noqa: E402

TARGET_VS_PLAIN = 1.3  # option time / plain fused time, at most
TARGET_VS_LOOP = 1.5  # loop time / rnnkit time, at least
LAYERS = 2
P_DROP, Q_REC, P_WEIGHT, P_ZONE = 0.3, 0.25, 0.5, 0.1

#: option → rnnkit keyword arguments
OPTIONS: dict[str, dict] = {
    "plain": {},
    "locked": dict(dropout=P_DROP, dropout_kind="locked"),
    "variational": dict(dropout=P_DROP, dropout_kind="variational", recurrent_dropout=Q_REC),
    "weight_drop": dict(weight_drop=P_WEIGHT),
    "zoneout": dict(zoneout=P_ZONE),
    "layer_norm": dict(layer_norm=True),
}
CELLS = {"lstm": (rnnkit.LSTM, nn.LSTMCell, 4), "gru": (rnnkit.GRU, nn.GRUCell, 3)}


@dataclass(frozen=True)
class Config:
    name: str
    B: int
    T: int
    H: int

    @property
    def label(self) -> str:
        return f"B{self.B} T{self.T} H{self.H}"


CONFIGS = {c.name: c for c in (Config("tiny", 4, 8, 16), Config("small", 32, 100, 128), Config("large", 64, 100, 512))}


# -- the Python baseline -----------------------------------------------------------------------------
class CellLoop(nn.Module):
    """``LAYERS`` torch.nn cells stepped in Python, implementing ``option`` as described in the module
    docstring. Input (T, B, H) → output (T, B, H) of the last layer."""

    def __init__(self, cell: str, H: int, option: str) -> None:
        super().__init__()
        _, cell_cls, gates = CELLS[cell]
        self.lstm, self.option, self.H = cell == "lstm", option, H
        self.cells = nn.ModuleList([cell_cls(H, H) for _ in range(LAYERS)])
        if option == "layer_norm":
            parts = {"ih": gates * H, "hh": gates * H, **({"c": H} if self.lstm else {})}
            self.norms = nn.ModuleList([nn.ModuleDict({k: nn.LayerNorm(n) for k, n in parts.items()})
                                        for _ in range(LAYERS)])

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer, cell in enumerate(self.cells):
            if layer > 0 and self.option in ("locked", "variational"):  # one mask per sequence
                out = out * out.new_empty(1, out.shape[1], out.shape[2]).bernoulli_(1 - P_DROP).div_(1 - P_DROP)
            if self.option == "layer_norm":
                out = self._layer_norm_layer(out, cell, self.norms[layer])
            else:
                out = self._layer(out, cell)
        return out

    def _layer(self, x: Tensor, cell: nn.Module) -> Tensor:
        T, B = x.shape[0], x.shape[1]
        h = x.new_zeros(B, self.H)
        c = x.new_zeros(B, self.H)
        option, ys = self.option, []
        if option == "variational":
            m = x.new_empty(B, self.H).bernoulli_(1 - Q_REC).div_(1 - Q_REC)
        if option == "zoneout":
            keep_h = (torch.rand(T, B, self.H) < P_ZONE).to(x.dtype)
            keep_c = (torch.rand(T, B, self.H) < P_ZONE).to(x.dtype) if self.lstm else None
        if option == "weight_drop":
            w_hh = F.dropout(cell.weight_hh, P_WEIGHT, training=True)
        for t in range(T):
            if option == "weight_drop":
                if self.lstm:
                    h, c = torch.lstm_cell(x[t], (h, c), cell.weight_ih, w_hh, cell.bias_ih, cell.bias_hh)
                else:
                    h = torch.gru_cell(x[t], h, cell.weight_ih, w_hh, cell.bias_ih, cell.bias_hh)
            elif option == "variational":
                if self.lstm:
                    h, c = cell(x[t], (h * m, c))
                else:
                    gi_r, gi_z, gi_n = F.linear(x[t], cell.weight_ih, cell.bias_ih).chunk(3, dim=1)
                    gh_r, gh_z, gh_n = F.linear(h * m, cell.weight_hh, cell.bias_hh).chunk(3, dim=1)
                    r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
                    h = torch.lerp(torch.tanh(gi_n + r * gh_n), h, z)  # (1 − z) n + z h, h unmasked
            elif option == "zoneout":
                if self.lstm:
                    h_new, c_new = cell(x[t], (h, c))
                    h, c = torch.lerp(h_new, h, keep_h[t]), torch.lerp(c_new, c, keep_c[t])
                else:
                    h = torch.lerp(cell(x[t], h), h, keep_h[t])
            elif self.lstm:
                h, c = cell(x[t], (h, c))
            else:
                h = cell(x[t], h)
            ys.append(h)
        return torch.stack(ys)

    def _layer_norm_layer(self, x: Tensor, cell: nn.Module, ln: nn.ModuleDict) -> Tensor:
        T, B = x.shape[0], x.shape[1]
        h = x.new_zeros(B, self.H)
        gi = ln["ih"](F.linear(x, cell.weight_ih))  # (T, B, G·H): the input part of every step at once
        ys = []
        if self.lstm:
            c = x.new_zeros(B, self.H)
            b = cell.bias_ih + cell.bias_hh
            for t in range(T):
                pre = gi[t] + ln["hh"](F.linear(h, cell.weight_hh)) + b
                a_i, a_f, a_g, a_o = pre.chunk(4, dim=1)
                c = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
                h = torch.sigmoid(a_o) * torch.tanh(ln["c"](c))
                ys.append(h)
        else:
            gi = gi + cell.bias_ih
            for t in range(T):
                gh = ln["hh"](F.linear(h, cell.weight_hh)) + cell.bias_hh
                gi_r, gi_z, gi_n = gi[t].chunk(3, dim=1)
                gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
                r = torch.sigmoid(gi_r + gh_r)
                z = torch.sigmoid(gi_z + gh_z)
                n = torch.tanh(gi_n + r * gh_n)
                h = torch.lerp(n, h, z)  # (1 − z) n + z h
                ys.append(h)
        return torch.stack(ys)

    @torch.no_grad()
    def load_from(self, layer: nn.Module) -> None:
        """Copy an rnnkit layer's weights (``weight_ih_l0`` → ``cells[0].weight_ih``, ``ln_ih_weight_l0`` →
        ``norms[0]["ih"].weight``, …)."""
        for k, cell in enumerate(self.cells):
            for name, p in cell.named_parameters():
                p.copy_(getattr(layer, f"{name}_l{k}"))
            if self.option == "layer_norm":
                for part, norm in self.norms[k].items():
                    kit_part = "cell" if part == "c" else part
                    norm.weight.copy_(getattr(layer, f"ln_{kit_part}_weight_l{k}"))
                    norm.bias.copy_(getattr(layer, f"ln_{kit_part}_bias_l{k}"))


# -- timing ------------------------------------------------------------------------------------------
def training_step(forward: Callable[[Tensor], Tensor], x: Tensor, R: Tensor, params: list[Tensor]) -> Callable:
    leaves = [x, *params]

    def step() -> None:
        loss = (forward(x) * R).sum()
        torch.autograd.grad(loss, leaves)

    return step


def check_loop(cfg: Config, cell: str, option: str, kit: nn.Module, loop: CellLoop) -> str | None:
    """The loop with rnnkit's weights must give rnnkit's output, for every option: the loop draws its masks
    with the same calls in the same order as rnnkit, so the same seed gives the same masks."""
    loop.load_from(kit)
    x = torch.randn(min(cfg.T, 20), cfg.B, cfg.H)
    outs = []
    with torch.no_grad(), torch.random.fork_rng():
        for forward in (lambda v: kit(v)[0], loop):
            torch.manual_seed(1)
            outs.append(forward(x))
    err = (outs[0] - outs[1]).abs().max().item()
    return None if err < 1e-4 else f"MISMATCH {cell} {option}: max |rnnkit − loop| = {err:.2e}"


def bench(cfg: Config, cell: str, options: list[str], timing: dict) -> tuple[list[dict], list[str]]:
    kit_cls, _, _ = CELLS[cell]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.T, cfg.B, cfg.H, generator=g).requires_grad_()
    R = torch.randn(cfg.T, cfg.B, cfg.H, generator=g)
    candidates, problems = {}, []
    auto_engines = {}
    for option in dict.fromkeys(["plain", *options]):
        kit = kit_cls(cfg.H, cfg.H, num_layers=LAYERS, engine="fused", **OPTIONS[option]).train()
        loop = CellLoop(cell, cfg.H, option).train()
        problem = check_loop(cfg, cell, option, kit, loop)
        if problem:
            problems.append(problem)
        candidates[f"rnnkit {option}"] = training_step(lambda v, m=kit: m(v)[0], x, R, list(kit.parameters()))
        candidates[f"loop {option}"] = training_step(loop, x, R, list(loop.parameters()))
        auto_engines[option] = auto_engine(kit, x)
        if auto_engines[option] != "fused":  # what the same layer runs by default: timed too
            auto = copy.deepcopy(kit)
            auto.engine = "auto"
            candidates[f"auto {option}"] = training_step(lambda v, m=auto: m(v)[0], x, R, list(auto.parameters()))
    t = time_alternating(candidates, baseline="rnnkit plain", **timing)

    def median_ratio(num: str, den: str) -> float:
        return statistics.median(a / b for a, b in zip(t.samples[num], t.samples[den]))

    rows = []
    for option in options:
        kit_name, loop_name = f"rnnkit {option}", f"loop {option}"
        auto_name = kit_name if auto_engines[option] == "fused" else f"auto {option}"
        rows.append(dict(config=cfg.name, shape=cfg.label, cell=cell.upper(), option=option,
                         rnnkit_ms=1e3 * t.medians[kit_name], plain_ms=1e3 * t.medians["rnnkit plain"],
                         loop_ms=1e3 * t.medians[loop_name], vs_plain=median_ratio(kit_name, "rnnkit plain"),
                         fused_vs_loop=median_ratio(loop_name, kit_name), auto_engine=auto_engines[option],
                         vs_loop=median_ratio(loop_name, auto_name), rounds=len(t.samples[kit_name])))
    return rows, problems


def auto_engine(kit: nn.Module, x: Tensor) -> str:
    """The engine ``engine="auto"`` picks for this layer's training step (asks rnnkit's dispatcher)."""
    from rnnkit.engine import dispatch

    return dispatch.choose_engine("auto", kit.cell, x, None, kit.options, kit.layer_weights()[0].layer_norm, True)


def render(rows: list[dict]) -> str:
    headers = ["config", "shape", "cell", "option", "fused ms", f"÷ plain (≤ {TARGET_VS_PLAIN})", "loop ms",
               "fused vs loop", "auto runs", f"auto vs loop (≥ {TARGET_VS_LOOP})"]
    body = []
    for r in rows:
        plain_ok = r["vs_plain"] <= TARGET_VS_PLAIN
        loop_ok = r["vs_loop"] >= TARGET_VS_LOOP
        body.append([r["config"], r["shape"], r["cell"], r["option"], f"{r['rnnkit_ms']:.2f}",
                     f"{r['vs_plain']:.2f}×" + ("" if plain_ok else " ✗"), f"{r['loop_ms']:.2f}",
                     f"{r['fused_vs_loop']:.2f}×", r["auto_engine"],
                     f"**{r['vs_loop']:.2f}×**" + ("" if loop_ok else " ✗")])
    return markdown_table(headers, body, align="llll" + "rrrrlr")


def summaries(rows: list[dict]) -> list[str]:
    opts = [r for r in rows if r["option"] != "plain"]
    lines = []
    if opts:
        worst = max(opts, key=lambda r: r["vs_plain"])
        ok = sum(r["vs_plain"] <= TARGET_VS_PLAIN for r in opts)
        lines.append(f"- options vs plain fused (target ≤ {TARGET_VS_PLAIN}×): {ok}/{len(opts)} within; worst "
                     f"{worst['vs_plain']:.2f}× ({worst['cell']} {worst['option']}, {worst['shape']})")
    if rows:
        worst = min(rows, key=lambda r: r["vs_loop"])
        ok = sum(r["vs_loop"] >= TARGET_VS_LOOP for r in rows)
        lines.append(f"- rnnkit (engine='auto') vs Python cell loop (target ≥ {TARGET_VS_LOOP}×): {ok}/{len(rows)} "
                     f"meet it; worst {worst['vs_loop']:.2f}× ({worst['cell']} {worst['option']}, {worst['shape']})")
    return lines


def parse_list(value: str, allowed, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad or value!r}; expected a comma list of {tuple(allowed)}")
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: small config, few rounds")
    p.add_argument("--configs", type=lambda v: parse_list(v, CONFIGS, "config"), default=None,
                   help=f"comma list of {tuple(CONFIGS)} (default: small,large; --quick: small)")
    p.add_argument("--cells", type=lambda v: parse_list(v, CELLS, "cell"), default=list(CELLS))
    p.add_argument("--options", type=lambda v: parse_list(v, OPTIONS, "option"), default=list(OPTIONS))
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 9; --quick 3)")
    p.add_argument("--min-time", type=float, default=None, help="seconds per sample (default 0.2; --quick 0.01)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                   help="wall clock, or this process's CPU time — steadier on a busy machine with --threads 1")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the rows here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [CONFIGS[c] for c in (args.configs or (["small"] if args.quick else ["small", "large"]))]
    timing = dict(repeats=args.repeats or (3 if args.quick else 9),
                  min_time=args.min_time if args.min_time is not None else (0.01 if args.quick else 0.2),
                  warmup=1 if args.quick else 2, warmup_time=0.0 if args.quick else 0.3,
                  timer=time.process_time if args.timer == "cpu" else time.perf_counter)
    info = machine_info()
    print(f"# rnnkit variants, training step, {LAYERS} layers, I = H, float32 — torch {info['torch']}, "
          f"{info['threads']} threads, {info['cpu_count']} CPUs, {args.timer} time")
    rows, problems = [], []
    started = time.perf_counter()
    for cfg in configs:
        for cell in args.cells:
            print(f"… {cfg.name} {cfg.label} {cell}", file=sys.stderr, flush=True)
            r, pr = bench(cfg, cell, args.options, timing)
            rows += r
            problems += pr
    print()
    print(render(rows))
    print()
    for line in summaries(rows) + problems:
        print(line)
    print(f"({time.perf_counter() - started:.0f} s; ratios are medians of per-round ratios; ✗ marks a missed target)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "configs": [asdict(c) for c in configs],
                                               "rows": rows, "problems": problems}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
