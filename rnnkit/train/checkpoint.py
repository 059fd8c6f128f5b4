"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory::

    out/checkpoint/
      latest                  one line: the name of the current snapshot (replaced atomically)
      step-00001200/
        config.json           format version, model type, model config, file sizes and SHA-256 digests, rnnkit version
        model.safetensors     the model's state_dict (tied weights stored once)
        vocab.json            the vocabulary (or vocabularies: {"source": …, "target": …}), if any
        trainer.json          trainer state for --resume: step, epoch, position, train config, the
                              optimizer's param groups, Python/NumPy RNG state, best metric, …
        trainer.safetensors   optimizer state tensors, torch RNG state, carried RNN state

Why snapshots and a pointer: several files must change together. A new snapshot is written into a
temporary directory (every file flushed and fsync'ed), renamed into place with ``os.replace``, and only
then does ``latest`` move to it (temp file + fsync + ``os.replace``). A crash or a full disk at any
moment leaves the previous snapshot and pointer intact; the old snapshot is removed only after the
pointer has moved. ``load_checkpoint`` accepts the checkpoint directory or one snapshot directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "rnnkit-checkpoint"
FORMAT_VERSION = 1
POINTER = "latest"


class CheckpointError(Exception):
    """A checkpoint that cannot be read (or written); the message is one line naming the problem."""


class CheckpointWriteError(CheckpointError):
    """Saving failed (a full disk, no permission); the previous checkpoint is intact."""


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns. ``trainer`` and ``trainer_tensors`` are empty for a
    checkpoint saved without trainer state (``save_checkpoint`` without ``trainer``, as the best
    checkpoint is)."""

    path: Path
    model_type: str
    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    vocab: dict[str, Any] | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    trainer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> dict[str, Any] | None:
        """The application and its data options (``{"name": "lm", "data": {…}}``), if saved."""
        return self.meta.get("task")

    @property
    def step(self) -> int:
        """The training step: the trainer state's, else the step the snapshot was saved at (a checkpoint
        of weights alone, as ``best/`` or ``load_checkpoint(trainer=False)`` gives)."""
        return int(self.trainer.get("step", self.meta.get("step", 0)))

    @property
    def files(self) -> dict[str, int | str]:
        """The snapshot's files as found on disk now: name → size in bytes, or ``"missing"`` for a file
        that config.json lists but the directory lacks (see :func:`files_on_disk`)."""
        return files_on_disk(self.path, self.meta.get("files"))


# --- writing --------------------------------------------------------------------------------

def _write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to a new file and forces it to disk. The one place bytes reach the disk, so a
    test can make it fail like a full disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Makes a rename inside ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")


def _dedupe(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors that share memory (tied embedding/decoder weights): store the
    first name only and remember the others as aliases of it."""
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in tensors.items():
        t = t.detach()
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.contiguous().cpu().clone() if t.numel() else t.cpu().contiguous()
    return out, aliases


def _tensor_bytes(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    stored, aliases = _dedupe(tensors)
    return st_save(stored, metadata={**meta, "aliases": json.dumps(aliases)})


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    model_type: str,
    config: dict[str, Any],
    weights: dict[str, torch.Tensor],
    vocab: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    task: dict[str, Any] | None = None,
    step: int = 0,
) -> Path:
    """Writes a new snapshot of the checkpoint at ``directory`` and points ``latest`` at it.
    ``task`` (JSON: the application and its data options) lets the CLI rebuild tokenizers and
    readers. Returns the snapshot's path. On any failure the previous snapshot stays the current one, the
    partial snapshot is removed, and ``CheckpointError`` names the cause. ``config`` may be the model's
    config dataclass (``model.config``); ``weights`` is a state dict (``model.state_dict()``)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(weights, Mapping) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise TypeError(f"save_checkpoint: weights must map names to tensors (model.state_dict()), got "
                        f"{type(weights).__name__}")
    root = Path(directory)
    files: dict[str, bytes] = {
        "model.safetensors": _tensor_bytes(weights, {"format": FORMAT, "model_type": model_type}),
    }
    if vocab is not None:
        files["vocab.json"] = _json_bytes(vocab)
    if trainer is not None:
        files["trainer.json"] = _json_bytes(trainer)
        files["trainer.safetensors"] = _tensor_bytes(trainer_tensors or {}, {"format": FORMAT})
    from .. import __version__

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rnnkit_version": __version__,
        "model_type": model_type,
        "model_config": config,
        "task": task,
        "step": int(step),
        "files": {name: len(data) for name, data in files.items()},
        # each file's SHA-256: a damaged byte that keeps the size (a NaN in the weights, say) is found on load
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    files["config.json"] = _json_bytes(header)  # written last: a snapshot without it is not one

    name = f"step-{int(step):08d}"
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".tmp-{name}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()  # (not mkdtemp, whose 0700 would hide the snapshot from the user's group; umask applies)
        for fname, data in files.items():
            _write_bytes(tmp / fname, data)
        _fsync_dir(tmp)
        final, k = root / name, 1
        while final.exists():  # re-saving the same step (the final save right after a periodic one)
            final, k = root / f"{name}.{k}", k + 1
        os.replace(tmp, final)
        tmp = None
        pointer_tmp = root / f".tmp-{POINTER}-{os.getpid()}"
        try:
            _write_bytes(pointer_tmp, (final.name + "\n").encode())
            os.replace(pointer_tmp, root / POINTER)
        except BaseException:
            # the pointer still names the old snapshot: remove the orphan new one
            shutil.rmtree(final, ignore_errors=True)
            pointer_tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(root)
    except OSError as e:
        before = "the previous checkpoint is unchanged" if (root / POINTER).is_file() else "no checkpoint was saved"
        raise CheckpointWriteError(f"could not save checkpoint to {root}: {e.strerror or e}; {before}") from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    # Only now is it safe to drop older snapshots, and what a killed writer left half-written.
    for old in root.iterdir():
        if old.is_dir() and old.name.startswith("step-") and old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)
        elif _stale_temporary(old.name):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return final


def _stale_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary of ``save_checkpoint`` (``.tmp-step-…-PID-HEX``, ``.tmp-latest-PID``) whose
    writer is no longer running: a process killed mid-save (SIGKILL skips its clean-up) left it behind."""
    m = re.fullmatch(r"\.tmp-.+?-(\d+)(?:-[0-9a-f]+)?", name)
    if m is None:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return True  # (this process's own: its save is done)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, OverflowError):
        return False  # (alive, another user's: leave it)
    return False


def latest_snapshot(directory: Path) -> Path | None:
    """The newest complete snapshot in a checkpoint directory without a ``latest`` pointer: a writer killed
    after its snapshot's rename (which makes it whole) but before the pointer's left that; None if none."""
    try:
        snaps = [d for d in directory.iterdir() if d.name.startswith("step-") and (d / "config.json").is_file()]
    except OSError:
        return None
    return max(snaps, key=lambda d: _snapshot_order(d.name)) if snaps else None


def holds_checkpoint(directory: Path) -> bool:
    """Whether a run's checkpoint directory holds anything of a checkpoint (a pointer, a snapshot, a config.json,
    even a damaged one); one left empty, or holding only a killed writer's temporaries, holds none."""
    try:
        return any(d.name in (POINTER, "config.json") or d.name.startswith("step-") for d in directory.iterdir())
    except OSError:
        return directory.exists()


def _snapshot_order(name: str) -> tuple[int, int]:
    """``step-00000012`` → (12, 0); ``step-00000012.1`` (a second snapshot of one step) → (12, 1)."""
    step, _, k = name.removeprefix("step-").partition(".")
    return (int(step) if step.isdigit() else -1, int(k) if k.isdigit() else 0)


# --- reading --------------------------------------------------------------------------------

def resolve(path: str | os.PathLike) -> Path:
    """The snapshot directory for a checkpoint directory, a snapshot directory or its config.json."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_file():
        if p.name == "config.json":
            return p.parent
        raise CheckpointError(f"not an rnnkit checkpoint: {p} is a file; give the checkpoint directory")
    if (p / POINTER).is_file():
        target = (p / POINTER).read_text(encoding="utf-8", errors="replace").strip()
        snap = p / target
        if not target or "/" in target or not (snap / "config.json").is_file():
            raise CheckpointError(f"checkpoint {p} is corrupt: '{POINTER}' names a missing snapshot {target!r}")
        return snap
    if (p / "config.json").is_file():
        return p
    newest = latest_snapshot(p)
    if newest is not None:  # (no pointer: a save killed between its snapshot and its pointer)
        return newest
    inside = [d.name for d in (p / "checkpoint", p / "best") if (d / POINTER).is_file() or (d / "config.json").is_file()]
    hint = f" (a training run's folder? its checkpoints are {' and '.join(str(p / d) for d in inside)})" if inside else ""
    raise CheckpointError(f"not an rnnkit checkpoint: {p} has no config.json{hint}")


def _check_digest(path: Path, data: bytes, digest: str | None) -> None:
    """``data`` (the bytes of ``path``) against the SHA-256 config.json recorded for it (checkpoints written
    before digests were recorded have none: nothing to check)."""
    if isinstance(digest, str) and hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(f"checkpoint file {path} is damaged: its contents do not match the SHA-256 that "
                              f"config.json recorded when it was written (damaged on disk, or edited since)")


def _read_json(path: Path, what: str, digest: str | None = None) -> Any:
    try:
        data = path.read_bytes()
        _check_digest(path, data, digest)
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {what} {path} is corrupt or truncated ({e})") from None


def read_header(path: str | os.PathLike, expected_type: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Resolves ``path`` and checks config.json: format, version, model type. Cheap (reads no tensors)."""
    snap = resolve(path)
    header = _read_json(snap / "config.json", "config")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"not an rnnkit checkpoint: {snap / 'config.json'} has no \"format\": \"{FORMAT}\"")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"checkpoint {snap} has no valid format_version (an int >= 1), got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {snap} has format version {version}, newer than this rnnkit reads "
            f"(up to {FORMAT_VERSION}); upgrade rnnkit"
        )
    model_type = header.get("model_type")
    if not isinstance(model_type, str):
        raise CheckpointError(f"checkpoint {snap}: config.json has no \"model_type\" (a name), got {model_type!r}")
    digests = header.get("sha256")  # (absent in checkpoints from before the digests: read without)
    if digests is not None and not (isinstance(digests, dict) and all(isinstance(d, str) for d in digests.values())):
        raise CheckpointError(f"checkpoint {snap}: config.json's \"sha256\" must map file names to digests; the "
                              f"file was edited or damaged")
    config = header.get("model_config")
    if config is not None and not (isinstance(config, dict) and all(isinstance(k, str) for k in config)):
        raise CheckpointError(f"checkpoint {snap}: config.json's \"model_config\" must be an object of the model's "
                              f"options, got {type(config).__name__}; the file was edited or damaged")
    if expected_type is not None and model_type != expected_type:
        raise CheckpointError(f"checkpoint {snap} holds a {model_type!r} model, expected {expected_type!r}")
    return snap, header


def _read_tensors(path: Path, expected_size: int | None,
                  digest: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    data = path.read_bytes()
    if expected_size is not None and len(data) != expected_size:
        raise CheckpointError(f"checkpoint file {path} is truncated or damaged: {len(data)} bytes, expected {expected_size}")
    _check_digest(path, data, digest)
    try:
        tensors = st_load(data)
        meta = _safetensors_metadata(data)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt: {e}") from None
    try:
        aliases = json.loads(meta.get("aliases", "{}"))
        if not isinstance(aliases, dict):
            raise ValueError(f"expected a JSON object, got {type(aliases).__name__}")
        for alias, name in aliases.items():
            if name not in tensors:
                raise ValueError(f"{alias!r} names the missing tensor {name!r}")
            tensors[alias] = tensors[name]
    except (ValueError, TypeError) as e:  # json's JSONDecodeError is a ValueError
        raise CheckpointError(f"checkpoint file {path} is corrupt: its list of shared tensors: {e}") from None
    return tensors, meta


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__", {}) or {}


def files_on_disk(snap: Path, listed: Any = None) -> dict[str, int | str]:
    """Name → size in bytes of every file in the snapshot directory ``snap`` (config.json included),
    plus ``"missing"`` for each name in ``listed`` (config.json's ``files``) that is not there."""
    found: dict[str, int | str] = {}
    for f in sorted(snap.iterdir()) if snap.is_dir() else ():
        if f.is_file():
            found[f.name] = f.stat().st_size
    for name in listed if isinstance(listed, dict) else {}:
        found.setdefault(name, "missing")
    return dict(sorted(found.items()))


def _listed_files(snap: Path, header: dict[str, Any], required: bool = True) -> dict[str, int]:
    """config.json's ``files`` (name → size written); with ``required``, every file it lists must
    exist in ``snap``."""
    listed = header.get("files", {})
    if not isinstance(listed, dict):
        raise CheckpointError(f"checkpoint {snap} is corrupt: config.json's \"files\" is not a table of file sizes")
    missing = [name for name in sorted(listed) if not (snap / str(name)).is_file()]
    if missing and required:
        present = sorted(f.name for f in snap.iterdir() if f.is_file())
        raise CheckpointError(
            f"checkpoint {snap} is incomplete: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing "
            f"(expected the files config.json lists: {', '.join(sorted(listed))}; found {', '.join(present)})"
        )
    return listed


def load_checkpoint(path: str | os.PathLike, expected_type: str | None = None, *, trainer: bool = True,
                    require_files: bool = True) -> Checkpoint:
    """Reads a checkpoint, checking format, version, model type, that every file config.json lists
    is present, and the tensor files' sizes. Raises ``CheckpointError`` with a one-line message for
    anything wrong. ``trainer=False`` skips the optimizer state (for evaluation and generation).
    ``require_files=False`` lets a listed vocab.json or trainer state be missing (for ``rnnkit info``,
    which shows ``Checkpoint.files`` with the missing ones marked); the weights are always required."""
    snap, header = read_header(path, expected_type)
    sizes = _listed_files(snap, header, require_files)
    digests = header.get("sha256") if isinstance(header.get("sha256"), dict) else {}
    weights, _ = _read_tensors(snap / "model.safetensors", sizes.get("model.safetensors"),
                               digests.get("model.safetensors"))
    vocab = read_vocab(snap, header)
    ckpt = Checkpoint(path=snap, model_type=header["model_type"], config=header.get("model_config", {}),
                      weights=weights, vocab=vocab, meta=header)
    # Without require_files, trainer state whose tensors are gone is skipped rather than an error.
    trainer_present = (snap / "trainer.json").is_file() and (require_files or (snap / "trainer.safetensors").is_file())
    if trainer and trainer_present:
        ckpt.trainer = _read_json(snap / "trainer.json", "trainer state", digests.get("trainer.json"))
        if not isinstance(ckpt.trainer, dict):
            raise CheckpointError(f"checkpoint trainer state {snap / 'trainer.json'} is corrupt: expected a JSON "
                                  f"object, got {type(ckpt.trainer).__name__}")
        ckpt.trainer_tensors, _ = _read_tensors(snap / "trainer.safetensors", sizes.get("trainer.safetensors"),
                                                digests.get("trainer.safetensors"))
    return ckpt


def read_vocab(snap: Path, header: dict[str, Any]) -> Any:
    """A snapshot's vocab.json (checked against its digest), or None where it has none: cheap, no tensors read.
    ``snap``, ``header``: what ``read_header`` returned."""
    digests = header.get("sha256") if isinstance(header.get("sha256"), dict) else {}
    path = snap / "vocab.json"
    return _read_json(path, "vocabulary", digests.get("vocab.json")) if path.is_file() else None


def _shape(shape) -> str:
    """``(96, 32)``; a 1-D shape as ``(96,)``, as Python writes tuples."""
    return str(tuple(int(n) for n in shape))


def weights_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """What first differs between a model's ``state_dict()`` (``expected``) and a checkpoint's
    weights (``found``), in one line — a weight of another shape, a missing one, an extra one — or
    ``None`` when every name and shape agrees."""
    for name, want in expected.items():
        if name in found and tuple(found[name].shape) != tuple(want.shape):
            return (f"{name} has shape {_shape(found[name].shape)} in the file, "
                    f"the model expects {_shape(want.shape)}")
    missing = [n for n in expected if n not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"the file has no weight {missing[0]!r}, which the model expects{more}"
    extra = [n for n in found if n not in expected]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        return f"the file has a weight {extra[0]!r} that the model does not{more}"
    return None


def other_version(ckpt: Checkpoint) -> str:
    """``" (written by rnnkit X; this is rnnkit Y)"`` where the checkpoint names another rnnkit version than the
    one reading it — a field or weight that a newer version added reads as a mismatch — else ``""``."""
    from .. import __version__

    written = ckpt.meta.get("rnnkit_version")
    if not isinstance(written, str) or written == __version__:
        return ""
    newer = _version_key(written) > _version_key(__version__)
    return (f" (written by rnnkit {written}; this is rnnkit {__version__}"
            f"{': a newer version wrote it, which this one may not read' if newer else ''})")


def _version_key(version: str) -> tuple[int, ...]:
    """'0.10.2' → (0, 10, 2): release numbers compared as numbers (a part that is not one counts as 0)."""
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+-]", version))


def load_weights(model: torch.nn.Module, ckpt: Checkpoint) -> None:
    """Loads ``ckpt.weights`` into ``model``; a ``CheckpointError`` naming the first mismatching weight
    and both shapes if they do not fit (the model was built from the checkpoint's config)."""
    problem = weights_mismatch(model.state_dict(), ckpt.weights)
    if problem is None:
        try:
            model.load_state_dict(ckpt.weights)
            return
        except RuntimeError as e:
            problem = str(e).strip().splitlines()[-1].strip() or type(e).__name__
    raise CheckpointError(f"checkpoint {ckpt.path} does not match its model: {problem}{other_version(ckpt)}")


# --- optimizer and RNG state as tensors + JSON ----------------------------------------------

def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Splits ``optimizer.state_dict()`` into a JSON part and flat tensors ``optim.<param>.<key>``."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def load_optimizer_state(optimizer: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = meta["param_groups"]
    for g in groups:  # JSON turned tuples into lists; torch compares betas etc. as tuples
        for k, v in g.items():
            if isinstance(v, list) and k != "params":
                g[k] = tuple(v)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Python, NumPy and torch (CPU and CUDA) generator states."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    meta = {"python": [version, list(internal), gauss], "numpy": [np_name, int(np_pos), int(np_has_gauss), float(np_gauss)]}
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return meta, tensors


def set_rng_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((int(k.rsplit(".", 1)[1]), t) for k, t in tensors.items() if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():  # by device number (as text, rng.cuda.10 sorts before rng.cuda.2)
        for i, state in cuda[: torch.cuda.device_count()]:  # (devices this process no longer sees are left)
            torch.cuda.set_rng_state(state, i)
