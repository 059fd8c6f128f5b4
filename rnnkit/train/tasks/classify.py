"""``rnnkit train classify``: text → label (many-to-one), from a CSV/TSV with ``text`` and ``label``
columns. Batches are bucketed by length (little padding) and reshuffled every epoch from the seed.
Metrics: accuracy (main), macro F1, loss — next to the majority-class baseline.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data import PAD, UNK, BucketBatcher, DataError, build_tokenizer, pad_batch, read_labelled, tokenizer_from_dict
from .. import metrics as M
from ..trainer import StepContext
from .base import Task, batches_of, check_data_config, device_of, refuse_unknown_only


@dataclass
class ClassifyData:
    """Data options of ``rnnkit train classify``.

    tokenizer: "word" (whitespace-separated) or "char" (names, codes). min_freq: rarer tokens become
    <unk> (1). lowercase: fold case (False). text_column / label_column: CSV header names ("text",
    "label"). valid_fraction: held out of --data without --valid (0.1).
    """

    tokenizer: Literal["char", "word"] = "word"
    min_freq: int = 1
    lowercase: bool = False
    text_column: str = "text"
    label_column: str = "label"
    valid_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_data_config(self, "min_freq")


def check_classes(names: Any, majority: Any, what: str) -> list[str]:
    """``names`` if it is a list of distinct strings holding ``majority`` (a saved label or tag set),
    else a ``ValueError`` saying what is wrong — for checkpoints whose vocab.json was edited."""
    if not isinstance(names, list):
        raise ValueError(f"{what}: expected a list of strings, got {type(names).__name__}")
    odd = [n for n in names if not isinstance(n, str)]
    if odd:
        raise ValueError(f"{what}: expected a list of strings, got an element {odd[0]!r} ({type(odd[0]).__name__})")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: expected distinct names, got duplicates of {sorted({n for n in names if names.count(n) > 1})[:5]}")
    if majority not in names:
        raise ValueError(f"majority: expected one of the {what}, got {majority!r}")
    return names


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text; a text with no known token becomes one <unk> (layers need length >= 1)."""
    return [tokenizer.encode(t) or [UNK] for t in texts]


class ClassifyTask(Task):
    name = "classify"
    model_type = "classifier"
    data_config = ClassifyData
    derived = ("num_classes", "vocab_size", "input_size", "padding_idx")
    main_metric = "accuracy"
    maximize = True
    train_defaults = {"lr": 3e-3, "batch_size": 32, "epochs": 10}
    model_defaults = {"embed_size": 64, "hidden_size": 128}
    builtin_defaults = {"names": {"tokenizer": "char"}}

    @classmethod
    def read(cls, paths: Sequence[str], data: ClassifyData) -> list[tuple[str, str]]:
        return read_labelled(paths[0], text_column=data.text_column, label_column=data.label_column)

    @classmethod
    def read_scored(cls, paths: Sequence[str], data: ClassifyData, classes: Sequence[str] = ()):
        """A first row whose label the model knows is an example, not a header with other names."""
        return read_labelled(paths[0], text_column=data.text_column, label_column=data.label_column,
                             known_labels=classes)

    @classmethod
    def classes_of(cls, example) -> Sequence[str]:
        return (example[1],)

    def fit(self, train: list[tuple[str, str]]) -> None:
        self.tokenizer = build_tokenizer(self.data.tokenizer, [t for t, _ in train], min_freq=self.data.min_freq,
                                         lowercase=self.data.lowercase, nfc=self.nfc)
        refuse_unknown_only(len(self.tokenizer), "the training texts", self.data.min_freq)
        self.labels = sorted({label for _, label in train})
        if len(self.labels) < 2:
            raise DataError(f"the training data has only one label ({self.labels[0]!r}); a classifier needs at least 2")
        self.majority = Counter(label for _, label in train).most_common(1)[0][0]

    def vocab_state(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_dict(), "labels": self.labels, "majority": self.majority}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.tokenizer = tokenizer_from_dict(state["tokenizer"])
        self.labels = check_classes(state["labels"], state["majority"], "labels")
        self.majority = state["majority"]

    def derived_config(self) -> dict[str, Any]:
        return {"num_classes": len(self.labels), "vocab_size": len(self.tokenizer), "input_size": None, "padding_idx": PAD}

    def _encode(self, examples, what: str = "the validation data"):
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted({label for _, label in examples if label not in index})
        if unknown:
            raise DataError(f"{what} has labels not seen in training: {unknown[:5]} (known: {self.labels[:10]}); "
                            f"the model can only predict the labels it was trained on")
        return encode_texts(self.tokenizer, [t for t, _ in examples]), torch.tensor([index[y] for _, y in examples])

    def set_data(self, train, valid) -> None:
        if train is not None:
            self.train_x, self.train_y = self._encode(train, "the training data")
        if valid is not None:
            self.valid_x, self.valid_y = self._encode(valid)

    def _batch(self, xs, ys, idx) -> dict[str, Tensor]:
        x, lengths = pad_batch([xs[i] for i in idx])
        return {"x": x, "lengths": lengths, "y": ys[idx]}

    def train_batches(self, epoch: int) -> list[dict[str, Tensor]]:
        batcher = BucketBatcher([len(x) for x in self.train_x], self.batch_size, seed=self.seed)
        batcher.set_epoch(epoch)
        return [self._batch(self.train_x, self.train_y, torch.tensor(b)) for b in batcher]

    def count_unit(self, model: nn.Module) -> str:
        return "examples"

    def loss(self, model: nn.Module, batch: dict, carry: Any, ctx: StepContext):
        logits = model(batch["x"], batch["lengths"])  # (B, C)
        return F.cross_entropy(logits, batch["y"], reduction="sum"), len(batch["y"]), None

    def _predict_ids(self, model: nn.Module, xs: list[list[int]]) -> tuple[Tensor, list[tuple[list[int], Tensor]]]:
        """(the predicted class of every example, [(example indices, their logits) per batch])."""
        dev, preds = device_of(model), []
        order = sorted(range(len(xs)), key=lambda i: len(xs[i]))  # similar lengths together
        out = torch.empty(len(xs), dtype=torch.long)
        for idx in batches_of(order, 256):
            x, lengths = pad_batch([xs[i] for i in idx])
            logits = model(x.to(dev), lengths.to(dev)).float().cpu()
            out[torch.tensor(idx)] = logits.argmax(1)
            preds.append((idx, logits))
        return out, preds

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        pred, chunks = self._predict_ids(model, self.valid_x)
        nll = sum(float(F.cross_entropy(lg, self.valid_y[torch.tensor(idx)], reduction="sum")) for idx, lg in chunks)
        gold = self.valid_y.tolist()
        return {"accuracy": M.accuracy(pred.tolist(), gold), "macro_f1": M.macro_f1(pred.tolist(), gold),
                "loss": nll / len(gold), **self.baseline()}

    def baseline(self) -> dict[str, float]:
        top = self.labels.index(self.majority)
        return {"majority_accuracy": M.accuracy([top] * len(self.valid_y), self.valid_y.tolist())}

    def predict(self, model: nn.Module, lines: Sequence[str]) -> list[str]:
        """A label per line; a blank line gets an empty line back (there is no text to classify), as the
        other tasks answer it."""
        keep = [i for i, line in enumerate(lines) if line.strip()]
        out = [""] * len(lines)
        if keep:
            # (stripped, as read_labelled strips a file's texts: a line predicts what its row evaluates to)
            pred, _ = self._predict_ids(model, encode_texts(self.tokenizer, [lines[i].strip() for i in keep]))
            for i, p in zip(keep, pred.tolist()):
                out[i] = self.labels[p]
        return out
