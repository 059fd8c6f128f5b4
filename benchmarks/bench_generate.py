#!/usr/bin/env python
"""Generation latency: rnnkit's packed single-step kernel against stepping torch.nn one token at a time.

Every candidate produces the same greedy continuation (batch 1, a one-token prompt, ``--tokens`` new
tokens) with the same weights, embedding and output layer; the rows report milliseconds per token and
the speed-up (median over alternating rounds of the per-round ratio, ``common.time_alternating``):

- ``lm_lstm``: ``LanguageModel.generate``, 2-layer LSTM, E = H = 512, against
  ``torch.nn.LSTM`` stepped with T = 1 and its state carried (target >= 8×), and against two
  ``torch.nn.LSTMCell`` stepped by hand (target >= 3×);
- ``lm_gru``: ``LanguageModel.generate``, 1-layer GRU, E = H = 256, against ``torch.nn.GRU`` stepped
  with T = 1 (target >= 3×);
- ``seq2seq_beam``: ``Seq2Seq.generate`` with beam width 5 against greedy, time per output token
  (target <= 3× greedy). EOS is made impossible (its output bias set to -1e9) so both decode exactly
  ``--tokens`` steps.

    .venv/bin/python benchmarks/bench_generate.py
    .venv/bin/python benchmarks/bench_generate.py --quick --json generate.json
    .venv/bin/python benchmarks/bench_generate.py --threads 1 --vocab 10000

Timings on a shared machine are noisy; compare ratios, not absolute figures across runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from common import machine_info, markdown_table, time_alternating  # noqa: E402
from rnnkit.models import LanguageModel, Seq2Seq  # noqa: E402

TARGET_VS_NN_LSTM = 8.0
TARGET_VS_LSTMCELL = 3.0
TARGET_VS_NN_GRU = 3.0
TARGET_BEAM_OVER_GREEDY = 3.0


def torch_layer_loop(model: LanguageModel, layer: nn.Module, n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Greedy decoding by stepping a torch.nn.LSTM/GRU with T = 1, carrying its state."""

    @torch.no_grad()
    def run(prompt: torch.Tensor) -> torch.Tensor:
        token, state, out = prompt[:, -1:], None, []  # (1, 1)
        for _ in range(n):
            h, state = layer(model.embedding(token), state)  # (1, 1, H)
            token = model.decoder(h[:, -1]).log_softmax(1).argmax(1, keepdim=True)
            out.append(token)
        return torch.cat(out, dim=1)

    return run


def torch_cell_loop(model: LanguageModel, cells: list[nn.LSTMCell], n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Greedy decoding by stepping one torch.nn.LSTMCell per layer."""

    @torch.no_grad()
    def run(prompt: torch.Tensor) -> torch.Tensor:
        token, out = prompt[:, -1], []
        H = cells[0].hidden_size
        states = [(torch.zeros(1, H), torch.zeros(1, H)) for _ in cells]
        for _ in range(n):
            x = model.embedding(token)
            for i, cell in enumerate(cells):
                states[i] = cell(x, states[i])
                x = states[i][0]
            token = model.decoder(x).log_softmax(1).argmax(1)
            out.append(token.unsqueeze(1))
        return torch.cat(out, dim=1)

    return run


def lstm_cells_like(model: LanguageModel) -> list[nn.LSTMCell]:
    cells = []
    for layer in range(model.rnn.num_layers):
        cell = nn.LSTMCell(model.rnn.input_size if layer == 0 else model.rnn.hidden_size, model.rnn.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data.copy_(getattr(model.rnn, f"{name}_l{layer}"))
        cells.append(cell.eval())
    return cells


def torch_layer_like(model: LanguageModel) -> nn.Module:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[model.config.cell]
    layer = cls(model.rnn.input_size, model.rnn.hidden_size, model.rnn.num_layers, batch_first=True)
    layer.load_state_dict(model.rnn.state_dict())
    return layer.eval()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_lm(name: str, model: LanguageModel, baselines: dict[str, Callable], n: int, repeats: int,
            timer: Callable[[], float]) -> list[dict]:
    prompt = torch.tensor([[1]])
    ours = lambda: model.generate(prompt, n).tokens  # noqa: E731
    expected = ours()
    for label, fn in baselines.items():  # same weights, same greedy path: the same tokens
        if not torch.equal(fn(prompt), expected):
            print(f"WARNING {name}: {label} chose other tokens than rnnkit (float32 near-ties?)")
    candidates = {label: (lambda fn=fn: fn(prompt)) for label, fn in baselines.items()}
    candidates["rnnkit generate"] = ours
    rows = []
    for label in baselines:  # one alternating timing per pair, so each ratio is measured in its own rounds
        t = time_alternating({label: candidates[label], "rnnkit generate": ours}, baseline=label, repeats=repeats,
                             timer=timer)
        rows.append({"case": name, "baseline": label, "baseline_ms": 1e3 * t.medians[label] / n,
                     "rnnkit_ms": 1e3 * t.medians["rnnkit generate"] / n, "ratio": t.ratios["rnnkit generate"],
                     "ratio_range": t.ratio_range("rnnkit generate"), "timing": t.as_dict()})
    return rows


def time_beam(model: Seq2Seq, S: int, n: int, width: int, repeats: int, timer: Callable[[], float]) -> dict:
    src = torch.randint(3, model.config.src_vocab_size, (1, S), generator=torch.Generator().manual_seed(0))
    greedy = lambda: model.generate(src, max_length=n)  # noqa: E731
    beam = lambda: model.generate(src, max_length=n, method="beam", beam_width=width)  # noqa: E731
    assert greedy().tokens.shape[1] == n and beam().tokens.shape[1] == n, "EOS must be impossible here"
    t = time_alternating({"greedy": greedy, f"beam {width}": beam}, baseline="greedy", repeats=repeats, timer=timer)
    slow = t.medians[f"beam {width}"] / t.medians["greedy"]
    rounds = [1 / r for r in t.round_ratios[f"beam {width}"]]
    return {"case": "seq2seq_beam", "baseline": "greedy", "baseline_ms": 1e3 * t.medians["greedy"] / n,
            "rnnkit_ms": 1e3 * t.medians[f"beam {width}"] / n, "beam_over_greedy": statistics.median(rounds),
            "beam_over_greedy_of_medians": slow, "ratio_range": (min(rounds), max(rounds)), "timing": t.as_dict()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=64, help="new tokens per generation (default 64)")
    p.add_argument("--vocab", type=int, default=1000, help="vocabulary size of every model (default 1000)")
    p.add_argument("--source-length", type=int, default=20, help="seq2seq source length (default 20)")
    p.add_argument("--beam", type=int, default=5, help="beam width (default 5)")
    p.add_argument("--repeats", type=int, default=9, help="alternating rounds per comparison (default 9)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="wall: elapsed time; cpu: CPU time of the process (all its threads), which leaves out the "
                        "time a busy shared machine keeps it waiting (default wall)")
    p.add_argument("--quick", action="store_true", help="16 tokens, 5 rounds (seconds)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write all results (and raw samples) here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, repeats = (16, 5) if args.quick else (args.tokens, args.repeats)
    torch.manual_seed(0)
    V = args.vocab
    print(f"machine: {machine_info()}")
    print(f"batch 1, greedy, {n} new tokens per call, vocabulary {V}, float32, {args.clock} clock\n")
    timer = CLOCKS[args.clock]

    lstm = LanguageModel(vocab_size=V, embed_size=512, hidden_size=512, num_layers=2, cell="lstm").eval()
    gru = LanguageModel(vocab_size=V, embed_size=256, hidden_size=256, num_layers=1, cell="gru").eval()
    rows = time_lm("lm_lstm 2×512", lstm, {"torch.nn.LSTM step": torch_layer_loop(lstm, torch_layer_like(lstm), n),
                                           "torch.nn.LSTMCell ×2": torch_cell_loop(lstm, lstm_cells_like(lstm), n)},
                   n, repeats, timer)
    rows += time_lm("lm_gru 1×256", gru, {"torch.nn.GRU step": torch_layer_loop(gru, torch_layer_like(gru), n)},
                    n, repeats, timer)
    s2s = Seq2Seq(src_vocab_size=V, tgt_vocab_size=V, embed_size=256, hidden_size=256, num_layers=2,
                  attention="general").eval()
    with torch.no_grad():
        s2s.output.bias[s2s.config.eos_id] = -1e9  # decode exactly n steps
    beam = time_beam(s2s, args.source_length, n, args.beam, repeats, timer)

    table = [[r["case"], r["baseline"], f"{r['baseline_ms']:.3f}", f"{r['rnnkit_ms']:.3f}", f"**{r['ratio']:.2f}×**",
              f"{r['ratio_range'][0]:.2f}–{r['ratio_range'][1]:.2f}"] for r in rows]
    table.append([f"seq2seq 2×256 general, S={args.source_length}", "greedy (baseline)", f"{beam['baseline_ms']:.3f}",
                  f"{beam['rnnkit_ms']:.3f} (beam {args.beam})", f"**{beam['beam_over_greedy']:.2f}× slower**",
                  f"{beam['ratio_range'][0]:.2f}–{beam['ratio_range'][1]:.2f}"])
    print(markdown_table(["case", "baseline", "baseline ms/token", "rnnkit ms/token", "speed-up", "rounds"], table))
    by = {r["baseline"]: r["ratio"] for r in rows}
    checks = [(f"generate vs torch.nn.LSTM step >= {TARGET_VS_NN_LSTM}×",
               by["torch.nn.LSTM step"] >= TARGET_VS_NN_LSTM, by["torch.nn.LSTM step"]),
              (f"generate vs torch.nn.LSTMCell ×2 >= {TARGET_VS_LSTMCELL}×",
               by["torch.nn.LSTMCell ×2"] >= TARGET_VS_LSTMCELL, by["torch.nn.LSTMCell ×2"]),
              (f"generate vs torch.nn.GRU step >= {TARGET_VS_NN_GRU}×", by["torch.nn.GRU step"] >= TARGET_VS_NN_GRU,
               by["torch.nn.GRU step"]),
              (f"beam {args.beam} / greedy per token <= {TARGET_BEAM_OVER_GREEDY}×",
               beam["beam_over_greedy"] <= TARGET_BEAM_OVER_GREEDY, beam["beam_over_greedy"])]
    print()
    for text, ok, value in checks:
        print(f"- {text}: {value:.2f}× {'met' if ok else 'NOT met'}")
    if args.json:
        payload = {"machine": machine_info(), "tokens": n, "vocab": V, "clock": args.clock, "results": rows + [beam],
                   "targets": {text: {"value": value, "met": ok} for text, ok, value in checks}}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
