"""The ``rnnkit`` command (also ``python -m rnnkit``): train, evaluate, generate, predict, info, demo —
and ``diagnose``/``experiment`` from ``rnnkit.diagnostics.commands``.

A thin layer: parsing and printing here; reading data, building models and training in
``rnnkit.train.tasks`` / ``rnnkit.train``. Exit codes: 0 success, 1 failure while running (diverged,
interrupted, an unexpected error), 2 bad usage or input (unknown option, unreadable data, a checkpoint
that does not fit). Errors are one line on stderr: ``rnnkit: error: …``; set RNNKIT_DEBUG=1 for the
traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time
import types
import typing
from pathlib import Path
from typing import Sequence

EXAMPLES = """\
examples:
  rnnkit train lm --data builtin:pydoc --time-budget 60 --out runs/lm
  rnnkit generate runs/lm/checkpoint --prompt "The " --length 300 --temperature 0.8
  rnnkit train classify --data builtin:names --epochs 5 --out runs/names
  echo "Dubois" | rnnkit predict runs/names/best
  rnnkit train tag --data train.conll --valid dev.conll --hidden_size 64 --decoder crf
  rnnkit train translate --data train.de train.en --max-steps 2000
  rnnkit train forecast --data series.csv --config forecast.toml --lr 1e-3
  rnnkit evaluate runs/names/best --data names_test.csv --json
  rnnkit train lm --data corpus.txt --out runs/lm --resume      # continue an interrupted run
  torchrun --nproc-per-node 2 -m rnnkit train classify --data builtin:names --max-steps 500
  rnnkit info runs/lm/checkpoint

'rnnkit train TASK --help' lists every --key option of TASK with its default."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: ``rnnkit train``'s own hyphenated flags (every other --key is a setting, which takes either spelling).
TRAIN_FLAGS = frozenset({"--max-steps", "--time-budget", "--no-progress"})


class UsageError(Exception):
    """Bad usage or input: exit code 2."""


class WriteError(Exception):
    """An output file that could not be written (a full disk, say): exit code 1, its message alone."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (not usage + error) and exits with 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    from .train.tasks import TASKS

    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="rnnkit", description="Recurrent networks for PyTorch: train, evaluate and use models "
                "for language modelling, classification, tagging, translation, forecasting and captioning.",
                epilog=EXAMPLES, formatter_class=fmt)
    from . import __version__

    p.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on a task", formatter_class=fmt, epilog=EXAMPLES,
                       description="Train a model. Any field of the training, model or data config is an option: "
                                   "--key value (see 'rnnkit train TASK --help').")
    t.add_argument("task", choices=sorted(TASKS), metavar="TASK", help=f"one of: {', '.join(sorted(TASKS))}")
    t.add_argument("--data", nargs="+", action="extend", required=True, metavar="PATH",
                   help="training data file(s), or builtin:NAME (translate: SRC TGT or one TSV)")
    t.add_argument("--valid", nargs="+", action="extend", metavar="PATH", help="validation data; default: a seeded held-out split")
    t.add_argument("--config", metavar="FILE.toml", help="settings; keys at top level or in [train] [model] [data]")
    t.add_argument("--out", metavar="DIR", help="where checkpoint, metrics and plot go (default runs/TASK)")
    t.add_argument("--seed", type=int, help="seed for initialisation, data order and split (default 0)")
    t.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    t.add_argument("--epochs", type=int, metavar="N", help="stop after N passes over the data")
    t.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop training after SECONDS, evaluate, save")
    t.add_argument("--resume", nargs="?", const="", metavar="CHECKPOINT",
                   help="continue a run exactly (default: OUT/checkpoint); the config must be unchanged")
    t.add_argument("--overwrite", action="store_true", help="start afresh even if OUT holds a checkpoint")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--threads", default=None, metavar="N|auto",
                   help="CPU threads for torch; auto = time 1 and all cores on a batch and keep the faster")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")

    e = sub.add_parser("evaluate", help="score a checkpoint on data", formatter_class=fmt,
                       description="Evaluate a trained model with its task's metrics.")
    e.add_argument("checkpoint")
    e.add_argument("--data", nargs="+", action="extend", required=True, metavar="PATH", help="data file(s) or builtin:NAME (its validation split)")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    e.add_argument("--context", choices=("saved", "none"), default="saved",
                   help="forecast only: 'saved' scores the file as the continuation of the end of the training "
                   "split that the checkpoint keeps (right for the series that followed it in training); 'none' "
                   "scores it on its own history (its first step unscored)")
    e.add_argument("--device", default="cpu")

    g = sub.add_parser("generate", help="sample text from a language model", formatter_class=fmt,
                       description="Continue a prompt with a trained language model.")
    g.add_argument("checkpoint")
    g.add_argument("--prompt", help="text to continue (default: a newline; a word-level model: its most "
                   "frequent word)")
    g.add_argument("--length", type=int, default=300, help="tokens to generate (default 300)")
    g.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; <1 safer, >1 wilder (default 1)")
    g.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    g.add_argument("--top-p", type=float, help="sample among the smallest set with probability >= p")
    g.add_argument("--num", type=int, default=1, help="how many samples (default 1), with a line '-----' "
                   "between two")
    g.add_argument("--seed", type=int, help="seed for sampling")
    g.add_argument("--device", default="cpu")

    pr = sub.add_parser("predict", help="one prediction per input line", formatter_class=fmt,
                        description="Read lines (a file or stdin), write one prediction per line.")
    pr.add_argument("checkpoint")
    pr.add_argument("--input", default="-", help="input file (default: stdin)")
    pr.add_argument("--output", default="-", help="output file (default: stdout)")
    pr.add_argument("--steps", type=int, help="forecast only: how many next steps to forecast (default "
                    "1), written in the input's format (one series: values apart by spaces; several: steps apart "
                    "by ';', series by ',')")
    pr.add_argument("--method", choices=("autoregressive", "direct"),
                    help="forecast only: feed each forecast back in (any --steps; the default), or the direct "
                    "head's steps at once (a model trained with --horizon >= --steps)")
    pr.add_argument("--device", default="cpu")

    i = sub.add_parser("info", help="describe a checkpoint", formatter_class=fmt)
    i.add_argument("checkpoint")
    i.add_argument("--json", action="store_true")

    d = sub.add_parser("demo", help="train a character LM on Python's docs, then generate", formatter_class=fmt,
                       description="The main demo: a character-level LSTM learns the Python documentation "
                                   "(pydoc_data, shipped with Python) within a time budget, then writes text.")
    d.add_argument("--time-budget", type=float, default=90.0, metavar="SECONDS", help="training time (default 90)")
    d.add_argument("--out", default="runs/demo", metavar="DIR")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--overwrite", action="store_true",
                   help="replace a run in OUT that rnnkit demo did not write (another demo's is replaced anyway)")
    d.add_argument("--threads", default="auto", metavar="N|auto", help="CPU threads (default auto: the faster of "
                   "1 and all cores, timed on one batch — a busy machine can make 1 thread much faster)")

    from .diagnostics.commands import register  # diagnose …, experiment … (each sets its handler in `func`)

    register(sub)
    return p


def _check_device(value: str, allow_auto: bool) -> str:
    """``--device``: auto (train only), cpu, cuda or cuda:N — and a CUDA device only where torch has CUDA."""
    import re

    import torch

    allowed = "auto, cpu, cuda or cuda:N" if allow_auto else "cpu, cuda or cuda:N"
    if not (value == "cpu" or (allow_auto and value == "auto") or re.fullmatch(r"cuda(:\d+)?", value)):
        raise UsageError(f"--device must be {allowed}, got {value!r}")
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {value}: this torch build has no usable CUDA device "
                             f"(torch.cuda.is_available() is False); use --device cpu")
        index = int(value.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {value}: there are {torch.cuda.device_count()} CUDA device(s)")
    return value


def _check_threads(threads: str | None) -> int | str | None:
    """--threads as given: None, 'auto' or a count >= 1 (checked before anything is read or removed)."""
    if threads is None or threads == "auto":
        return threads
    try:
        n = int(threads)
    except ValueError:
        raise UsageError(f"--threads must be a number or 'auto', got {threads!r}") from None
    if n < 1:
        raise UsageError(f"--threads must be >= 1, got {n}")
    return n


def _set_threads(trainer, threads: int | str | None) -> None:
    """Applies a value ``_check_threads`` passed."""
    import torch

    if threads == "auto":
        trainer.tune_threads()
    elif threads is not None:
        torch.set_num_threads(threads)


# --- commands -------------------------------------------------------------------------------

def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _say(*args, **kw) -> None:
    if _is_main_rank():
        print(*args, **kw, flush=True)


def _json(obj) -> str:
    """``--json`` output: strict JSON (non-finite numbers as null; ``train.records.strict_json``)."""
    from .train.records import strict_json

    return strict_json(obj)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_train(args, extra: list[str]) -> int:
    from .train.options import check_out_dir
    from .train.tasks import TASKS, settings_for

    _check_device(args.device, allow_auto=True)
    threads = _check_threads(args.threads)
    settings = settings_for(TASKS[args.task], args.data)
    if args.config:
        settings.load_toml(args.config)
    settings.parse_pairs(extra)
    for flag, key in (("seed", "seed"), ("max_steps", "max_steps"), ("epochs", "epochs"), ("time_budget", "time_budget")):
        if getattr(args, flag) is not None:
            settings.set_value(key, getattr(args, flag))
    out = Path(args.out or f"runs/{args.task}")
    check_out_dir(out)  # before the data is read
    _check_batch_per_process(settings)
    with _out_locked(out):
        return _train(args, out, settings, threads)


def _check_batch_per_process(settings) -> None:
    """Under torchrun each process needs a row of every batch: a --batch_size below the process count is a
    usage error found before the data is read (the trainer still refuses data whose every batch is short)."""
    from .train.config import TrainConfig

    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return  # (named by the distributed set-up)
    batch = settings.values["train"].get("batch_size", TrainConfig.batch_size)
    if world > 1 and isinstance(batch, int) and batch < world:
        raise UsageError(f"--batch_size {batch} is smaller than the {world} processes, which need a row each: raise "
                         f"it to at least {world}")


#: The lock file a training run holds in its --out folder (``_out_locked``).
LOCK_NAME = ".rnnkit-train.lock"


@contextlib.contextmanager
def _out_locked(out: Path):
    """Holds an advisory lock on ``out/.rnnkit-train.lock`` (released by the system if the process dies) for a
    training run (train, demo), so that a second run into the same folder is refused at once instead of mixing
    its metrics and checkpoints with the first's. The file stays (deleting it would let a run that opened it
    just before lock a file no other run sees), except in a folder this run made and, holding the lock, leaves
    empty otherwise: then the file and the folders made go. Where ``fcntl`` is missing (Windows), where the
    lock file cannot be opened or the file system cannot lock (a warning), and on the processes of torchrun
    but the first, nothing is locked."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is None or not _is_main_rank():
        yield
        return
    made = []  # the folders made here, deepest first
    parent = out
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # (check_out_dir passed: a file system that refuses even root, /proc, say)
        raise UsageError(f"--out {out}: cannot make the folder ({e.strerror or e})") from None
    path = out / LOCK_NAME
    try:  # (read-only is enough for flock: a lock file another user made stays usable)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as e:
        fd = None
        print(f"rnnkit: warning: cannot open {path} ({e.strerror or e}); not guarding --out against a second run",
              file=sys.stderr)
    locked = False
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                raise UsageError(f"{out} is in use by another rnnkit run (train or demo, holding {path}): wait for "
                                 f"it to end, or choose another --out") from None
            except OSError as e:  # a file system without locks: run as before there was one
                print(f"rnnkit: warning: cannot lock {path} ({e.strerror or e}); not guarding --out against a second "
                      f"run", file=sys.stderr)
        yield
    finally:
        if locked and made and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            path.unlink(missing_ok=True)  # (while still holding it; only a run that held it cleans up)
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # (only if empty)
        if fd is not None:
            os.close(fd)


def _train(args, out: Path, settings, threads) -> int:
    import torch

    from .train.checkpoint import holds_checkpoint, read_header, read_vocab
    from .train.tasks import TASKS, build_run, saved_nfc

    resume, nfc = None, True
    if args.resume is not None and args.overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite starts it afresh: give one of them")
    if args.resume is not None:
        resume = Path(args.resume) if args.resume else out / "checkpoint"
        snapshot, header = read_header(resume, TASKS[args.task].model_type)  # a missing or broken checkpoint, or
        # another task's, is reported before the data is read
        if args.resume and holds_checkpoint(out / "checkpoint") and \
                Path(snapshot).resolve().parent != (out / "checkpoint").resolve():
            raise UsageError(f"{out} holds another run's checkpoint: --resume {args.resume} would replace it and mix "
                             f"the two runs' metrics; resume into another --out, or continue that run with --resume "
                             f"alone")
        nfc = saved_nfc(read_vocab(snapshot, header))  # (a run from before NFC resumes without it)
    elif holds_checkpoint(out / "checkpoint") and not args.overwrite:
        raise UsageError(f"{out} already holds a checkpoint: add --resume to continue it, "
                         f"--overwrite to start afresh, or choose another --out")
    run = build_run(args.task, args.data, args.valid, settings, out_dir=out,
                    progress=not args.no_progress, device=args.device, nfc=nfc)
    tr = run.trainer
    if args.overwrite and tr.dist.is_main:  # the data and model are good: now the old run's snapshots go
        for name in ("checkpoint", "best"):  # (its best/ stayed until this run's first evaluation)
            shutil.rmtree(out / name, ignore_errors=True)
    _set_threads(tr, threads)
    n_params = sum(p.numel() for p in tr.model.parameters())
    _say(f"{args.task}: {run.sizes['train']:,} training / {run.sizes['valid']:,} validation items "
         f"(validation {run.valid_source}){run.task.data_note()}; model {tr.model_type}, {n_params:,} parameters; "
         f"{tr.dist.world_size} process(es) on {tr.device}, {torch.get_num_threads()} thread(s)",
         file=sys.stderr if args.json else sys.stdout)  # --json: stdout holds the JSON object alone
    try:
        result = tr.fit(resume=resume)
        tr.close()
    finally:
        from .train.distributed import shutdown

        shutdown()  # after a failure: no barrier (the other ranks may never reach one)
    if not _is_main_rank():
        return EXIT_OK if result.stop_reason != "interrupted" else EXIT_FAILED
    if result.stop_reason == "interrupted":
        print(f"rnnkit: interrupted at step {result.step}: saved a resumable checkpoint to {out / 'checkpoint'}; "
              f"continue with the same command plus --resume", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(_json({"step": result.step, "stop_reason": result.stop_reason, **result.metrics}))
    else:
        print(f"stopped after {result.step} steps ({result.epochs_done:.3g} epochs, {result.elapsed:.1f} s of training, "
              f"{result.tokens / max(result.elapsed, 1e-9):,.0f} {result.unit}/s): {result.stop_reason.replace('_', ' ')}")
        print("validation: " + "  ".join(f"{k} {_fmt(v)}" for k, v in result.metrics.items()))
        print(f"checkpoint: {out / 'checkpoint'}" + (f"   best: {result.best_checkpoint}" if result.best_checkpoint else ""))
        print(f"metrics:    {result.metrics_log}")
        print(f"loss plot:  {result.loss_plot or '(none: no training loss was logged)'}")
    return EXIT_OK


def _read_split(task, paths: Sequence[str]):
    """What ``evaluate`` scores: a file's contents, or a built-in dataset's validation split."""
    if len(paths) == 1 and paths[0].startswith("builtin:"):
        _, valid, _ = type(task).load_splits(paths, None, task.data, 0)
        return valid
    type(task)._check_count(paths, "--data")
    return type(task).read_scored(paths, task.data, getattr(task, "labels", None) or getattr(task, "tags", None) or ())


def cmd_evaluate(args) -> int:
    import torch

    from .train.tasks import load_trained

    task, model, ckpt = load_trained(args.checkpoint, device=_check_device(args.device, allow_auto=False))
    if args.context != "saved":
        if not hasattr(task, "drop_saved_context"):
            raise UsageError(f"--context is a forecast option; {args.checkpoint} is a {task.name!r} model")
        task.drop_saved_context()
    task.set_data_naming(None, _read_split(task, args.data), args.data)
    with torch.no_grad():
        metrics = task.evaluate(model)
    note = task.evaluation_note() if hasattr(task, "evaluation_note") else None
    if args.json:
        if note:
            print(note, file=sys.stderr)  # (stdout holds the JSON object alone)
        print(_json(metrics))
    else:
        print(f"{ckpt.path} ({task.name}, step {ckpt.meta.get('step', 0)}) on {' '.join(args.data)}:")
        if note:
            print(f"  ({note})")
        for k, v in metrics.items():
            print(f"  {k:28s} {_fmt(v)}")
    return EXIT_OK


def cmd_generate(args) -> int:
    import torch

    from .train.tasks import load_trained

    _check_generate_args(args)
    task, model, _ = load_trained(args.checkpoint, device=_check_device(args.device, allow_auto=False))
    if not hasattr(task, "generate"):
        raise UsageError(f"generate needs a language model; {args.checkpoint} is a {task.name!r} model "
                         f"(use 'rnnkit predict')")
    prompt = task.default_prompt() if args.prompt is None else args.prompt
    for k in range(args.num):
        if k:
            print(SAMPLE_SEPARATOR)
        with torch.no_grad():
            text = task.generate(model, prompt, args.length, temperature=args.temperature, top_k=args.top_k,
                                 top_p=args.top_p, seed=None if args.seed is None else args.seed + k)
        print(task.join_prompt(prompt, text))
    return EXIT_OK


#: The line between two samples of ``generate --num N`` (samples contain newlines of their own).
SAMPLE_SEPARATOR = "-----"


def _check_generate_args(args) -> None:
    import math

    if args.length <= 0:
        raise UsageError(f"--length must be > 0, got {args.length}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:  # (NaN fails this too)
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k is not None and args.top_k <= 0:
        raise UsageError(f"--top-k must be > 0, got {args.top_k}")
    if args.num <= 0:
        raise UsageError(f"--num must be > 0, got {args.num}")
    if args.seed is not None and not 0 <= args.seed <= 2**64 - args.num:  # (sample k draws with seed + k)
        raise UsageError(f"--seed must be an int from 0 to {2**64 - args.num} (torch's seeds are 64-bit), got "
                         f"{args.seed}")
    if args.temperature == 0 and (args.top_k is not None or args.top_p is not None):  # (they would be ignored)
        raise UsageError("--top-k and --top-p filter what sampling draws from; --temperature 0 is greedy (the most "
                         "likely token every time): give a temperature > 0, or leave them out")
    if args.prompt == "":
        raise UsageError("--prompt is empty; give some text to continue, or leave --prompt out")


def cmd_predict(args) -> int:
    import torch

    from .data.errors import DataError, line_and_column, normalise_text, read_text_file
    from .train.tasks import load_trained

    task, model, _ = load_trained(args.checkpoint, device=_check_device(args.device, allow_auto=False))
    options = {}
    if args.steps is not None or args.method is not None:
        if task.name != "forecast":
            raise UsageError(f"--steps and --method are forecast options; {args.checkpoint} is a {task.name!r} model")
        steps, method = args.steps or 1, args.method or "autoregressive"
        if args.steps is not None and args.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {args.steps}")
        horizon = model.config.horizon
        if method == "direct" and steps > horizon:
            raise UsageError(f"--method direct forecasts at most the model's horizon, {horizon} steps (train with "
                             f"--horizon {steps}), got --steps {steps}")
        options = {"steps": steps, "method": method}
    if args.output != "-":
        _check_writable_file(args.output, "--output")
    if args.input == "-":
        raw = sys.stdin.buffer.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = line_and_column(raw, e.start)[0]
            raise UsageError(f"stdin:{line}: bytes that are not UTF-8 ({raw[e.start:e.end].hex(' ')})") from None
        text = normalise_text(text)  # (line ends and byte-order marks, as read_text_file reads a file)
    else:
        text = read_text_file(args.input, allow_blank=True)  # blank lines in, blank lines out, as on stdin
    # one prediction per line: lines end at \n, \r\n or \r only (str.splitlines also breaks at form
    # feeds, U+2028 and other separators, which would shift every later output line)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    with torch.no_grad():
        try:
            preds = task.predict(model, lines, **options)
        except DataError as e:  # a line the task cannot read ("line 3: expected numbers"): name the source
            if e.path is not None:
                raise
            line, _, reason = e.reason.partition(": ")
            n = int(line[5:]) if line.startswith("line ") and line[5:].isdigit() else None
            raise DataError(reason if n else e.reason, "stdin" if args.input == "-" else args.input, n) from None
    out = "".join(p + "\n" for p in preds)
    if args.output == "-":
        sys.stdout.write(out)
    else:
        try:
            Path(args.output).write_text(out, encoding="utf-8")
        except OSError as e:  # (checked writable before: this is the disk, not the path)
            raise WriteError(f"--output {args.output}: cannot write the predictions ({e.strerror or e})") from None
    return EXIT_OK


def _check_writable_file(path: str, flag: str) -> None:
    """A file we are about to write: its folder must exist and it must not be a folder itself."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    if not p.parent.is_dir():
        raise UsageError(f"{flag} {path}: the folder {p.parent} does not exist")


def _parameter_count(c) -> int:
    """Trainable parameters of the checkpoint's model, counted as ``model.parameters()`` counts them (the
    saved weights also hold buffers, such as a forecaster's scaler, and tied weights under both names);
    where the model cannot be rebuilt, the saved tensors, each storage once."""
    from .train.tasks import model_class

    try:
        return sum(p.numel() for p in model_class(c.model_type).from_config(c.config).parameters())
    except Exception:  # noqa: BLE001 - an unknown type or an edited config: count what was saved
        return sum(t.numel() for t in {t.untyped_storage().data_ptr(): t for t in c.weights.values()}.values())


def cmd_info(args) -> int:
    from .train.checkpoint import load_checkpoint

    c = load_checkpoint(args.checkpoint, require_files=False)  # show what is there, missing files marked
    n_params = _parameter_count(c)
    info = {"path": str(c.path), "model_type": c.model_type, "task": c.task, "format_version": c.meta["format_version"],
            "rnnkit_version": c.meta.get("rnnkit_version"), "step": c.meta.get("step"), "parameters": n_params,
            "model_config": c.config, "files": c.files}
    if c.trainer:
        info.update(epoch=c.trainer["epoch"], elapsed_s=round(c.trainer["elapsed"], 1), tokens=c.trainer["tokens"],
                    best=c.trainer["best"], last_metrics={k: v for k, v in c.trainer.get("last_metrics", {}).items()
                                                          if not k.startswith("_")},
                    train_config=c.trainer["train_config"], resumable=True)
    else:
        info["resumable"] = False
    if args.json:
        print(_json(info))
        return EXIT_OK
    for k, v in info.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk:22s} {_fmt(vv) if not isinstance(vv, (dict, list)) else json.dumps(vv)}")
        else:
            print(f"{k:24s} {_fmt(v)}")
    return EXIT_OK


def cmd_demo(args) -> int:
    """Train a char LSTM on the Python docs within the time budget, then show what it learned."""
    from .train.options import check_out_dir
    from .train.tasks import settings_for, TASKS

    out = Path(args.out)
    threads = _check_threads(args.threads)
    settings = settings_for(TASKS["lm"], ["builtin:pydoc"])
    for key, value in DEMO_SETTINGS.items():
        settings.set_value(key, value)
    settings.set_value("time_budget", args.time_budget)
    settings.set_value("seed", args.seed)
    check_out_dir(out)
    with _out_locked(out):  # (as train: not into a folder another run is writing)
        return _demo(args, out, settings, threads)


def _demo(args, out: Path, settings, threads) -> int:
    import torch

    from .train.tasks import build_run, load_trained

    t0 = time.perf_counter()
    mark = out / DEMO_MARK
    if (out / "checkpoint").exists() and not mark.exists() and not args.overwrite and not _demo_run(out):
        raise UsageError(f"{out} holds a run that rnnkit demo did not write (its checkpoint would be replaced): add "
                         f"--overwrite to replace it, or choose another --out")
    run = build_run("lm", ["builtin:pydoc"], None, settings, out_dir=out, progress=not args.no_progress)
    for name in ("checkpoint", "best"):  # (the previous demo's, or the run --overwrite replaces)
        shutil.rmtree(out / name, ignore_errors=True)
    mark.touch()
    _set_threads(run.trainer, threads)
    n_params = sum(p.numel() for p in run.trainer.model.parameters())
    print(f"rnnkit demo: a character-level LSTM reads the Python documentation (pydoc_data.topics, shipped "
          f"with Python) for {args.time_budget:g} s on {torch.get_num_threads()} CPU thread(s), then writes.")
    print(f"corpus: {run.sizes['train']:,} training / {run.sizes['valid']:,} validation characters, "
          f"{len(run.task.tokenizer)} symbols; model: 1-layer LSTM, hidden {DEMO_SETTINGS['hidden_size']}, "
          f"{n_params:,} parameters")
    result = run.trainer.fit()
    if result.stop_reason == "interrupted":
        print(f"interrupted: a resumable checkpoint is in {out / 'checkpoint'}", file=sys.stderr)
        return EXIT_FAILED
    m = result.metrics
    print(f"\ntrained {result.step} steps ({result.tokens:,} characters, {result.elapsed:.0f} s, "
          f"{result.tokens / max(result.elapsed, 1e-9):,.0f} chars/s)")
    print(f"validation bits per character: {m['bits_per_char']:.3f}   "
          f"(unigram baseline {m['unigram_bits_per_char']:.3f}; perplexity {m['perplexity']:.2f})")
    task, model, _ = load_trained(out / "checkpoint")
    prompt = "The "
    for temp in (0.5, 1.0):
        with torch.no_grad():
            text = task.generate(model, prompt, 400, temperature=temp, seed=args.seed)
        print(f"\n--- generated, temperature {temp} (prompt {prompt!r}) ---\n{prompt}{text}")
    print(f"\ncheckpoint:  {out / 'checkpoint'}   (rnnkit generate {out / 'checkpoint'} --prompt 'def ')")
    print(f"metrics log: {result.metrics_log}\nloss plot:   {result.loss_plot}")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return EXIT_OK


#: Marks a folder whose run ``rnnkit demo`` wrote: a later demo replaces that run without --overwrite.
DEMO_MARK = ".rnnkit-demo"


def _demo_run(out: Path) -> bool:
    """Whether ``out``'s checkpoint is a demo's from before the mark (``make demo`` run again after an update):
    a character LM of the demo's shape."""
    from .train.checkpoint import CheckpointError, read_header

    try:
        _, header = read_header(out / "checkpoint", "language_model")
    except (CheckpointError, OSError, ValueError):
        return False
    model, task = header.get("model_config") or {}, header.get("task") or {}
    data = task.get("data") if isinstance(task, dict) else None
    return (isinstance(model, dict) and isinstance(data, dict) and task.get("name") == "lm"
            and data.get("tokenizer") == "char" and model.get("cell") == "lstm"
            and all(model.get(k) == DEMO_SETTINGS[k] for k in ("hidden_size", "embed_size", "num_layers")))

#: The demo's model and training settings (chosen for ~90 s on 2 CPU cores; see the README).
DEMO_SETTINGS = {"hidden_size": 256, "embed_size": 64, "num_layers": 1, "batch_size": 32, "bptt": 100,
                 "lr": 4e-3, "schedule": "cosine", "min_lr_ratio": 0.05, "eval_every": 150, "log_every": 10}


def _task_help(task_name: str) -> str:
    """The task's description and every --key option with its type and default."""
    from .models.config import RecurrentOptions
    from .train.config import TrainConfig
    from .train.tasks import TASKS, model_class, settings_for

    task = TASKS[task_name]
    s = settings_for(task)
    classes = {"data": task.data_config, "model": model_class(task.model_type).config_class, "train": TrainConfig}
    layer_options = {f.name for f in dataclasses.fields(RecurrentOptions)}
    doc = (sys.modules[task.__module__].__doc__ or "").strip().replace("``", "'")
    lines = [doc, "",
             f"usage: rnnkit train {task_name} --data PATH [--valid PATH] [--config FILE.toml] [--out DIR] "
             f"[--max-steps N] [--epochs N] [--time-budget S] [--seed N] [--resume [CKPT]] [--overwrite] "
             f"[--device auto|cpu|cuda|cuda:N] [--threads N|auto] [--json] [--no-progress] [--key value ...]",
             "", f"options (--key value, or key = value in --config FILE.toml):"]
    for group, cls in classes.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        notes = getattr(cls, "HELP_DEFAULTS", {})  # defaults decided after construction, in words
        lines.append(f"  [{group}]")
        names = [name for name, (g, _) in s.fields.items() if g == group]
        for name in sorted(names, key=lambda n: n in layer_options):  # the model's own first, the layers' after
            hint = s.fields[name][1]
            default = s.values[group].get(name, defaults.get(name))
            default = notes[name] if name in notes and default == defaults.get(name) else repr(default)
            lines.append(f"    --{name:24s} {_kind(hint):34s} {default}")
    return "\n".join(lines)


def _kind(hint) -> str:
    """An option's type in --help: a choice as a|b|c, ``X | None`` as both."""
    if typing.get_origin(hint) is typing.Literal:
        return "|".join(map(str, typing.get_args(hint)))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_kind(a) for a in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("RNNKIT_DEBUG"))
    try:
        if len(argv) >= 2 and argv[0] == "train" and ("-h" in argv or "--help" in argv) and not argv[1].startswith("-"):
            from .train.tasks import TASKS

            if argv[1] in TASKS:
                print(_task_help(argv[1]))
                return EXIT_OK
        if argv and argv[0] != "train":
            argv = [_hyphenated(a) for a in argv]
        elif argv:  # train's --key settings take both spellings already; its own flags (--no-progress) too
            argv = [_hyphenated(a) if _hyphenated(a).partition("=")[0] in TRAIN_FLAGS else a for a in argv]
        parser = _parser()
        args, extra = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if extra and args.command != "train":
            raise UsageError(f"rnnkit {args.command}: unrecognized arguments: {' '.join(extra)}")
        commands = {"evaluate": cmd_evaluate, "generate": cmd_generate, "predict": cmd_predict,
                    "info": cmd_info, "demo": cmd_demo}
        if args.command in ("train", "demo", "experiment"):
            from .train.memory import retain_freed_memory

            retain_freed_memory()  # training reallocates the same large buffers every step
        if args.command == "train":
            return cmd_train(args, extra)
        return commands[args.command](args) if args.command in commands else args.func(args)
    except SystemExit as e:  # --help and --version
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `rnnkit predict … | head`
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - every error becomes one line and an exit code
        if debug:
            raise
        code, msg = _classify(e)
        print(f"rnnkit: error: {msg}", file=sys.stderr)
        return code


def _hyphenated(arg: str) -> str:
    """``--hidden_size`` → ``--hidden-size`` (an option's name only, not a value after ``=``), so every
    command takes the spelling ``rnnkit train`` takes."""
    name, eq, value = arg.partition("=")
    if not re.fullmatch(r"--[A-Za-z][\w-]*", name):  # (a value that starts with --, "-- my_var = 1", stays)
        return arg
    return name.replace("_", "-") + eq + value


def _classify(e: Exception) -> tuple[int, str]:
    """Exit code and one-line message for an exception."""
    from .data.errors import DataError, MissingExtraError
    from .train.checkpoint import CheckpointError, CheckpointWriteError
    from .train.options import OptionError
    from .train.trainer import ConfigMismatch, TrainingError

    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, (CheckpointWriteError, WriteError)):
        return EXIT_FAILED, msg
    if isinstance(e, (UsageError, DataError, CheckpointError, OptionError, ConfigMismatch, MissingExtraError)):
        return EXIT_USAGE, msg
    if isinstance(e, TrainingError):
        return EXIT_FAILED, msg
    return EXIT_FAILED, f"{type(e).__name__}: {msg} (set RNNKIT_DEBUG=1 for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
