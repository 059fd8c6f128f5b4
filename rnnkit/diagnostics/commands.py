"""The ``rnnkit diagnose …`` and ``rnnkit experiment …`` commands.

``register(subparsers)`` adds them to the ``rnnkit`` command's parser (``rnnkit/cli.py``); each parsed
namespace carries its handler in ``func``, which returns an exit code. ``main(argv)`` runs them on
their own (``python -m rnnkit.diagnostics.commands …``), for tests and for use before the CLI is set up.

    rnnkit diagnose gradients --cell rnn,lstm,gru --length 200 [--train-steps N] [--out DIR]
    rnnkit diagnose saturation --cell lstm,gru --length 100 [--train-steps N]
    rnnkit diagnose saturation --checkpoint runs/lm/checkpoint --text-file sample.txt
    rnnkit diagnose activations runs/lm/checkpoint --text-file sample.txt --unit 17 --out page.html
    rnnkit experiment adding --cell rnn,irnn,lstm,gru --length 10,50 --steps 4000 --jobs 2 [--out DIR]
    rnnkit experiment copy --cell rnn,lstm,gru --delay 10,50 [--memory 3 --alphabet 4] --steps 4000 --jobs 2
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from ..train.config import MAX_SEED  # (the experiments draw batch k from seed 1_000_003 (seed + 1) + k)
from ..train.options import OptionError, check_out_dir, check_out_file
from ..train.records import strict_json
from .experiments import COPY_DELAY, DEFAULT_LR
from .experiments import TrainConfig as _Defaults
from .tasks import CELL_LABELS, CELLS


def _cells(value: str) -> list[str]:
    cells = [c.strip() for c in value.split(",") if c.strip()]
    aliases = {"rnn_tanh": "rnn", "tanh": "rnn", "rnn_relu": "irnn"}
    cells = [aliases.get(c, c) for c in cells]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise argparse.ArgumentTypeError(f"unknown cell {', '.join(bad) or value!r}; expected a comma-separated "
                                         f"list of {', '.join(CELLS)}")
    return _once(cells, "cell", value)


def _once(items: list, what: str, value: str) -> list:
    """A list that names nothing twice (a repeated cell or length ran again and was tabled once)."""
    twice = sorted({str(v) for v in items if items.count(v) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{value!r} names the {what} {', '.join(twice)} more than once")
    return items


def _lengths(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not out or min(out) < 1:  # (the adding problem needs >= 2: checked with the task)
        raise argparse.ArgumentTypeError(f"lengths must be integers >= 1, got {value!r}")
    return _once(out, "length", value)


def _positive(kind):
    def parse(value: str):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {value!r}") from None
        if not (v > 0 and math.isfinite(v)):  # (nan passed a test of v <= 0)
            raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value!r}")
        return v
    return parse


def _seed(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {value!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an int from 0 to {MAX_SEED:,}, got {value!r}")
    return v


def _alphabet(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {value!r}") from None
    if not 2 <= v <= 9:
        raise argparse.ArgumentTypeError(f"the alphabet has 2 to 9 symbols (digits), got {value!r}")
    return v


def _length(value: str) -> int:
    """One sequence length of the adding problem: an integer >= 2 (it marks two numbers)."""
    T = _positive(int)(value)
    if T < 2:
        raise argparse.ArgumentTypeError(f"the adding problem needs length >= 2, got {T}")
    return T


def _nonnegative_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {value!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {value!r}")
    return v


def register(subparsers) -> None:
    """Add ``diagnose`` (gradients, saturation, activations) and ``experiment`` (adding, copy)."""
    fmt = argparse.RawDescriptionHelpFormatter
    d = subparsers.add_parser("diagnose", help="gradient flow through time, gate saturation, activation pages",
                              formatter_class=fmt,
                              description="See why a recurrent network learns or fails: gradient flow through\n"
                                          "time, gate saturation, and a page of one hidden unit's activations.")
    dsub = d.add_subparsers(dest="diagnose_command", metavar="WHAT", required=True)

    g = dsub.add_parser("gradients", help="‖∂L/∂h_t‖ per step on the adding task, plotted per cell",
                        description="Measure the exact gradient norm at every time step of each cell on an adding-"
                                    "problem batch (at initialisation, and after --train-steps of training), print "
                                    "the decay per step and write gradient_flow.png and .json.")
    g.add_argument("--cell", type=_cells, default=list(CELLS), help="comma-separated: rnn,irnn,lstm,gru (default all)")
    g.add_argument("--length", type=_length, default=200, help="sequence length T >= 2 (default 200)")
    g.add_argument("--hidden-size", type=_positive(int), default=64, help="(default 64)")
    g.add_argument("--batch-size", type=_positive(int), default=32, help="(default 32)")
    g.add_argument("--train-steps", type=_nonnegative_int, default=0,
                   help="also train each cell this many steps on the task and measure again (default 0)")
    g.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED:,} (0)")
    g.add_argument("--out", default="runs/diagnose", metavar="DIR", help="where the PNG and JSON go")
    g.add_argument("--json", action="store_true", help="print the summary as JSON")
    g.set_defaults(func=cmd_gradients)

    s = dsub.add_parser("saturation", help="per-gate saturation of cells on the adding task, or of a trained LM",
                        description="Fraction of sigmoid gates above 0.9 / below 0.1 and of tanh values beyond ±0.9.")
    # (None: not given; defaults in SATURATION_ADDING, which --checkpoint refuses rather than ignores)
    s.add_argument("--cell", type=_cells, help="(default lstm,gru,rnn)")
    s.add_argument("--length", type=_length, help="(default 100)")
    s.add_argument("--hidden-size", type=_positive(int), help="(default 64)")
    s.add_argument("--train-steps", type=_nonnegative_int, help="train on the adding task first (default 0)")
    s.add_argument("--checkpoint", metavar="CKPT", help="a language model from 'rnnkit train lm' instead of --cell")
    s.add_argument("--text", help="text for --checkpoint")
    s.add_argument("--text-file", metavar="FILE", help="text for --checkpoint, from a file")
    s.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED:,} (0)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_saturation)

    a = dsub.add_parser("activations", help="HTML page: text coloured by a hidden unit, next-character guesses",
                        description="Write a self-contained HTML page showing a character LM's text coloured by one "
                                    "hidden unit's activation, with the top next-character guesses on hover.")
    a.add_argument("checkpoint", help="a character language model from 'rnnkit train lm'")
    a.add_argument("--text", help="the text to show")
    a.add_argument("--text-file", metavar="FILE")
    a.add_argument("--unit", type=int, help="hidden unit (default: the one that varies most over the text)")
    a.add_argument("--units", type=int, default=8, help="how many most-varying units the page offers (default 8)")
    a.add_argument("--top-k", type=_positive(int), default=5)
    a.add_argument("--out", default="runs/diagnose/activations.html", metavar="FILE.html")
    a.set_defaults(func=cmd_activations)

    e = subparsers.add_parser("experiment", help="long-range benchmarks: the adding problem, copy memory",
                              formatter_class=fmt,
                              description="Train each cell on the task at each length within a step budget; report "
                                          "steps to solve (adding: test MSE < 0.0167; copy: symbol accuracy ≥ 0.9) "
                                          "and write a CSV, a markdown table and a plot.")
    e.add_argument("task", choices=["adding", "copy"])
    e.add_argument("--cell", type=_cells, default=list(CELLS), help="(default rnn,irnn,lstm,gru)")
    e.add_argument("--length", "--delay", dest="length", type=_lengths, default=None,
                   help=f"comma-separated lengths T; for copy, the delay between the last symbol and the recall "
                        f"(default: adding 50, copy {COPY_DELAY})")
    e.add_argument("--steps", type=_positive(int), default=4000, help="step budget per run (default 4000)")
    e.add_argument("--hidden-size", type=_positive(int), default=64)
    e.add_argument("--batch-size", type=_positive(int), default=50)
    e.add_argument("--lr", type=_positive(float), default=None,
                   help=f"Adam's learning rate (default: adding {DEFAULT_LR['adding']:g}, copy {DEFAULT_LR['copy']:g})")
    e.add_argument("--memory", type=_positive(int),
                   help=f"copy: how many symbols to remember (default {_Defaults.copy_memory}; Arjovsky et al. 2016: 10)")
    e.add_argument("--alphabet", type=_alphabet,
                   help=f"copy: symbols to draw from, 2..9 (default {_Defaults.copy_alphabet}; Arjovsky et al.: 8)")
    e.add_argument("--max-norm", type=_positive(float), default=1.0, help="gradient clipping (default 1.0)")
    e.add_argument("--eval-every", type=_positive(int), default=100)
    e.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED:,} (0)")
    e.add_argument("--threads", type=_positive(int), default=1,
                   help="torch threads per run (default 1: these models are small, a second thread barely helps)")
    e.add_argument("--jobs", type=_positive(int), default=1, help="runs at once, in separate processes (default 1)")
    e.add_argument("--gradients", action="store_true",
                   help="also measure each trained model's gradient flow and plot it per length")
    e.add_argument("--out", default="runs/experiment", metavar="DIR")
    e.add_argument("--json", action="store_true", help="print the results as JSON lines")
    e.set_defaults(func=cmd_experiment)


# -- handlers ---------------------------------------------------------------------------------------
def _flow_table(flows: dict, title: str) -> str:
    lines = [title, f"  {'cell':10s} {'decay/step':>11s} {'‖∂L/∂h_1‖/‖∂L/∂h_T‖':>20s} {'‖∂L/∂h_1‖':>10s}"]
    for cell, f in flows.items():
        s = f.summary()
        lines.append(f"  {CELL_LABELS[cell]:10s} {s['decay_log10_per_step']:11.4f} {s['ratio_first_last']:20.3g} "
                     f"{s['grad_h_first']:10.3g}")
    return "\n".join(lines)


def cmd_gradients(args) -> int:
    from .experiments import TrainConfig, run_adding, task_gradient_flow
    from .plots import plot_gradient_flow
    from .tasks import AddingModel

    check_out_dir(Path(args.out))  # before the training runs
    T = args.length
    at_init = {}
    for cell in args.cell:
        torch.manual_seed(args.seed)
        at_init[cell] = task_gradient_flow(AddingModel(cell, args.hidden_size), "adding", T,
                                           batch_size=args.batch_size, seed=args.seed)
    panels, titles, summary = [at_init], [f"at initialisation (T={T})"], {"at_init": at_init}
    trained = {}
    if args.train_steps:
        cfg = TrainConfig(hidden_size=args.hidden_size, seed=args.seed, stop_when_solved=False)
        for cell in args.cell:
            r = run_adding(cell, T, args.train_steps, cfg)
            # measured like the panel at initialisation (same batch size and seed), so the two compare
            trained[cell] = task_gradient_flow(r.model, "adding", T, batch_size=args.batch_size, seed=args.seed)
            print(f"trained {CELL_LABELS[cell]} {args.train_steps} steps: test MSE {r.metric:.4f} ({r.wall_s:.0f}s)",
                  flush=True, file=sys.stderr if args.json else sys.stdout)  # --json: stdout holds the JSON alone
        panels.append(trained)
        titles.append(f"after {args.train_steps} training steps")
        summary["trained"] = trained
    out = Path(args.out)
    png = plot_gradient_flow(panels, out / "gradient_flow.png", panel_titles=titles,
                             title=f"Gradient flow through time, adding problem, T={T}")
    record = {k: {c: {**f.summary(), "grad_h": f.h[-1].tolist()} for c, f in v.items()} for k, v in summary.items()}
    (out / "gradient_flow.json").write_text(strict_json(record))
    if args.json:
        print(strict_json({k: {c: f.summary() for c, f in v.items()} for k, v in summary.items()}))
    else:
        print(_flow_table(at_init, f"gradient flow at initialisation, adding problem T={T} "
                                   "(decay in orders of magnitude per step back):"))
        if trained:
            print(_flow_table(trained, f"after {args.train_steps} training steps:"))
        print(f"wrote {png} and {out / 'gradient_flow.json'}")
    return 0


def _read_text(args) -> str:
    from ..data.errors import read_text_file

    if args.text_file and args.text:
        raise OptionError("give the text with --text or --text-file, not both")
    if args.text_file:
        return read_text_file(args.text_file)
    if args.text:
        return args.text
    raise OptionError("give the text with --text or --text-file")


def _load_lm(path: str):
    from ..train.tasks import load_trained

    task, model, _ = load_trained(path)
    if not all(hasattr(model, n) for n in ("embedding", "rnn", "decoder")):
        raise OptionError(f"{path} holds a {type(model).__name__}; this command needs a language model "
                          f"(from 'rnnkit train lm')")
    return task, model


#: ``diagnose saturation``'s options for the adding-task models, and their defaults.
SATURATION_ADDING = {"cell": ["lstm", "gru", "rnn"], "length": 100, "hidden_size": 64, "train_steps": 0}


def cmd_saturation(args) -> int:
    from .saturation import gate_saturation

    given = [k for k in SATURATION_ADDING if getattr(args, k) is not None]
    if args.checkpoint and given:  # (they would be left unused)
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise OptionError(f"{flags} describe{'s' if len(given) == 1 else ''} the adding-task models; with "
                          f"--checkpoint the language model is measured on --text as it is: drop "
                          f"{'it' if len(given) == 1 else 'them'}")
    for k, default in SATURATION_ADDING.items():
        if getattr(args, k) is None:
            setattr(args, k, default)
    reports = {}
    if args.checkpoint:
        task, model = _load_lm(args.checkpoint)
        ids = task.encode(_read_text(args))[None]  # (1, T)
        if ids.shape[1] == 0:
            raise OptionError("the text has no tokens for this model (a word model reads no word in it); give "
                              "some text")
        with torch.no_grad():
            x = model.embedding(ids)  # (1, T, E)
        if not model.rnn.batch_first:
            x = x.transpose(0, 1)
        reports[Path(args.checkpoint).name] = gate_saturation(model.rnn, x)
    else:
        if args.text is not None or args.text_file is not None:  # (it would be left unread)
            raise OptionError("--text and --text-file are read by a language model: give its --checkpoint too (without "
                              "one, saturation runs the adding problem's inputs)")
        from .experiments import TrainConfig, run_adding
        from .tasks import AddingModel, adding_batch

        for cell in args.cell:
            torch.manual_seed(args.seed)
            model = AddingModel(cell, args.hidden_size)
            if args.train_steps:
                cfg = TrainConfig(hidden_size=args.hidden_size, seed=args.seed, stop_when_solved=False)
                model = run_adding(cell, args.length, args.train_steps, cfg).model
            x, _ = adding_batch(64, args.length, seed=args.seed + 3)
            reports[CELL_LABELS[cell]] = gate_saturation(model.rnn, x)
    if args.json:
        print(strict_json({k: r.as_dict() for k, r in reports.items()}))
    else:
        when = f"after {args.train_steps} steps on the adding task" if args.train_steps else "at initialisation"
        for name, r in reports.items():
            print(f"{name} ({'on the given text' if args.checkpoint else when}, T={args.length}):"
                  if not args.checkpoint else f"{name} on the given text:")
            print(r.table())
    return 0


def cmd_activations(args) -> int:
    from .activations import activation_page, char_lm_trace, most_variable_units

    check_out_file(Path(args.out))
    task, model = _load_lm(args.checkpoint)
    if task.data.tokenizer != "char":  # the page traces one character per step
        raise OptionError(f"{args.checkpoint} is a {task.data.tokenizer}-level language model; the activation page "
                          f"reads the text one character at a time and needs a character model "
                          f"('rnnkit train lm' with the default --tokenizer char)")
    vocab = task.tokenizer.vocab
    itos = list(vocab.tokens)
    stoi = {t: i for i, t in enumerate(itos)}
    trace = char_lm_trace(model, _read_text(args), stoi, itos, unk=vocab.unk_id)
    width = trace.hidden.shape[1]
    if args.unit is not None and not 0 <= args.unit < width:
        raise OptionError(f"--unit {args.unit}: the model has hidden units 0 to {width - 1}")
    units = most_variable_units(trace, max(args.units, 1))
    unit = units[0] if args.unit is None else args.unit
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(activation_page(trace, unit, units=units, top_k=args.top_k,
                                   title=f"{Path(args.checkpoint).name}: hidden unit activations"), encoding="utf-8")
    print(f"wrote {out} (unit {unit}; the page offers units {', '.join(map(str, units))})")
    return 0


def cmd_experiment(args) -> int:
    from .experiments import TrainConfig, markdown_table, sweep
    from .plots import plot_gradient_flow

    copy_only = [f"--{k}" for k in ("memory", "alphabet") if getattr(args, k) is not None]
    if args.task != "copy" and copy_only:  # (they would be left unused)
        raise OptionError(f"{' and '.join(copy_only)}: {'options' if len(copy_only) > 1 else 'an option'} of the "
                          f"copy task, not of {args.task}")
    args.memory = _Defaults.copy_memory if args.memory is None else args.memory
    args.alphabet = _Defaults.copy_alphabet if args.alphabet is None else args.alphabet

    cfg = TrainConfig(hidden_size=args.hidden_size, batch_size=args.batch_size, lr=args.lr, max_norm=args.max_norm,
                      eval_every=args.eval_every, seed=args.seed, threads=args.threads, copy_memory=args.memory,
                      copy_alphabet=args.alphabet)
    check_out_dir(Path(args.out))  # before the runs: a sweep takes minutes
    lengths = args.length or [COPY_DELAY if args.task == "copy" else 50]
    if args.task == "adding" and min(lengths) < 2:  # a delay of 1 is a copy task; two marks need T >= 2
        raise OptionError(f"rnnkit experiment adding: --length must be >= 2 (it marks two numbers), got {min(lengths)}")
    start = time.perf_counter()
    progress = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    if args.task == "copy" and not args.json:
        print(f"copy memory: {args.memory} symbols from 1..{args.alphabet}, recalled after a delay of "
              f"T = {', '.join(map(str, lengths))} steps (guessing scores {1 / args.alphabet:.2f})", flush=True)
    results = sweep(args.task, args.cell, lengths, args.steps, cfg, args.out, with_flow=args.gradients,
                    jobs=args.jobs, progress=progress)
    out = Path(args.out)
    if args.gradients:
        for T in lengths:
            flows = {r.cell: r.flow for r in results if r.T == T and r.flow is not None}
            plot_gradient_flow(flows, out / f"{args.task}_gradients_T{T}.png",
                               title=f"{args.task}, T={T}: gradient flow after training (≤ {args.steps} steps)",
                               loss="loss on every step" if args.task == "copy" else "loss after the last step")
    if args.json:
        for r in results:
            print(strict_json(r.row()))
    else:
        print(markdown_table(results), end="")
        print(f"total {time.perf_counter() - start:.0f}s; wrote {out}/{args.task}_results.csv, .md and "
              f"{args.task}_steps.png" + (" and gradient plots" if args.gradients else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``diagnose``/``experiment`` on their own: ``main(["experiment", "adding", "--steps", "100"])``."""
    parser = argparse.ArgumentParser(prog="rnnkit")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # as the `rnnkit` command runs these: a bad option is one line and exit status 2
    from ..cli import main as rnnkit_main

    sys.exit(rnnkit_main(sys.argv[1:]))
