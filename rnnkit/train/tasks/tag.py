"""``rnnkit train tag``: one tag per token (many-to-many, aligned), from a CoNLL column file.

When every tag is ``O`` or ``B-``/``I-``/``E-``/``S-`` + a type, the main metric is entity-level F1
in the CoNLL convention (baseline: all ``O``, F1 = 0); otherwise (e.g. the copy task, digits as tags)
it is token accuracy (baseline: the most frequent tag). ``predict`` reads one sentence per line,
tokens separated by spaces, and writes the tags the same way.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data import PAD, BucketBatcher, DataError, Vocabulary, pad_batch, read_conll
from .. import metrics as M
from ..trainer import StepContext
from .base import Task, check_data_config, batches_of, device_of
from .classify import check_classes


@dataclass
class TagData:
    """Data options of ``rnnkit train tag``.

    min_freq: rarer words become <unk> (1). lowercase: fold case of words (False).
    valid_fraction: sentences held out of --data without --valid (0.1).
    """

    min_freq: int = 1
    lowercase: bool = False
    valid_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_data_config(self, "min_freq")


def is_bio(tags) -> bool:
    return all(t == "O" or (len(t) > 2 and t[1] == "-" and t[0] in "BIES") for t in tags)


class TagTask(Task):
    name = "tag"
    model_type = "tagger"
    data_config = TagData
    derived = ("vocab_size", "num_tags", "padding_idx", "char_vocab_size")
    main_metric = "entity_f1"
    maximize = True
    train_defaults = {"lr": 3e-3, "batch_size": 32, "epochs": 10}
    model_defaults = {"embed_size": 64, "hidden_size": 128}

    @classmethod
    def read(cls, paths: Sequence[str], data: TagData) -> list[tuple[list[str], list[str]]]:
        return read_conll(paths[0])

    def _words(self, tokens: Sequence[str]) -> list[str]:
        return [t.lower() for t in tokens] if self.data.lowercase else list(tokens)

    @classmethod
    def classes_of(cls, example) -> Sequence[str]:
        return example[1]

    def fit(self, train) -> None:
        self.words = Vocabulary.build((self._words(toks) for toks, _ in train), min_freq=self.data.min_freq)
        counts = Counter(t for _, tags in train for t in tags)
        self.tags = sorted(counts)
        self.bio = is_bio(self.tags)
        self.majority = counts.most_common(1)[0][0]
        self._set_metric()

    def _set_metric(self) -> None:
        self.main_metric = "entity_f1" if self.bio else "token_accuracy"

    def vocab_state(self) -> dict[str, Any]:
        return {"words": self.words.to_dict(), "tags": self.tags, "majority": self.majority}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.words = Vocabulary.from_dict(state["words"])
        self.tags = check_classes(state["tags"], state["majority"], "tags")
        self.majority = state["majority"]
        self.bio = is_bio(self.tags)
        self._set_metric()

    def derived_config(self) -> dict[str, Any]:
        return {"vocab_size": len(self.words), "num_tags": len(self.tags), "padding_idx": PAD, "char_vocab_size": None}

    def _encode(self, sentences, what: str = "the validation data") -> tuple[list[list[int]], list[list[int]]]:
        index = {t: i for i, t in enumerate(self.tags)}
        unknown = sorted({t for _, tags in sentences for t in tags if t not in index})
        if unknown:
            raise DataError(f"{what} has tags not seen in training: {unknown[:5]} (known: {self.tags[:10]}); "
                            f"the model can only predict the tags it was trained on")
        return ([self.words.encode(self._words(toks)) for toks, _ in sentences],
                [[index[t] for t in tags] for _, tags in sentences])

    def set_data(self, train, valid) -> None:
        if train is not None:
            self.train_x, self.train_y = self._encode(train, "the training data")
        if valid is not None:
            self.valid_x, self.valid_y = self._encode(valid)

    def train_batches(self, epoch: int) -> list[dict[str, Tensor]]:
        batcher = BucketBatcher([len(x) for x in self.train_x], self.batch_size, seed=self.seed)
        batcher.set_epoch(epoch)
        out = []
        for idx in batcher:
            x, lengths = pad_batch([self.train_x[i] for i in idx])
            y, _ = pad_batch([self.train_y[i] for i in idx])
            out.append({"x": x, "lengths": lengths, "y": y})
        return out

    def loss(self, model: nn.Module, batch: dict, carry: Any, ctx: StepContext):
        x, lengths, y = batch["x"], batch["lengths"], batch["y"]
        if getattr(model, "crf", None) is not None:  # the model's mean over sentences, summed back
            return model.loss(x, y, lengths) * len(lengths), len(lengths), None
        emissions = model(x, lengths)  # (B, T, K)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        return F.cross_entropy(emissions[mask], y[mask], reduction="sum"), int(mask.sum()), None

    def _predict_ids(self, model: nn.Module, xs: list[list[int]]) -> list[list[int]]:
        dev = device_of(model)
        out: list[list[int]] = [[] for _ in xs]
        order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
        for idx in batches_of(order, 256):
            x, lengths = pad_batch([xs[i] for i in idx])
            pred = model.predict(x.to(dev), lengths.to(dev)).cpu()  # (B, T), -1 past each length
            for row, i in enumerate(idx):
                out[i] = pred[row, : len(xs[i])].tolist()
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        pred = self._predict_ids(model, self.valid_x)
        flat_p = [t for s in pred for t in s]
        flat_g = [t for s in self.valid_y for t in s]
        out = {"token_accuracy": M.accuracy(flat_p, flat_g)}
        if self.bio:
            names = lambda seqs: [[self.tags[i] for i in s] for s in seqs]  # noqa: E731
            prf = M.entity_prf(names(pred), names(self.valid_y))
            out.update(entity_f1=prf["f1"], entity_precision=prf["precision"], entity_recall=prf["recall"])
        out.update(self.baseline())
        return out

    def baseline(self) -> dict[str, float]:
        if self.bio:
            gold = [[self.tags[i] for i in s] for s in self.valid_y]
            return {"all_o_entity_f1": M.entity_f1([["O"] * len(s) for s in gold], gold)}
        top = self.tags.index(self.majority)
        flat_g = [t for s in self.valid_y for t in s]
        return {"majority_token_accuracy": M.accuracy([top] * len(flat_g), flat_g)}

    def predict(self, model: nn.Module, lines: Sequence[str]) -> list[str]:
        sentences = [line.split() for line in lines]
        xs = [self.words.encode(self._words(s)) if s else [] for s in sentences]
        keep = [i for i, x in enumerate(xs) if x]
        pred = self._predict_ids(model, [xs[i] for i in keep]) if keep else []
        out = [""] * len(lines)
        for i, p in zip(keep, pred):
            out[i] = " ".join(self.tags[t] for t in p)
        return out
