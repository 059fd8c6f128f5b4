"""``rnnkit train tag``: one tag per token (many-to-many, aligned), from a CoNLL column file.

When every tag is ``O`` or ``B-``/``I-``/``E-``/``S-`` + a type, the main metric is entity-level F1
in the CoNLL convention (baseline: all ``O``, F1 = 0); otherwise (e.g. the copy task, digits as tags)
it is token accuracy (baseline: the most frequent tag). ``predict`` reads one sentence per line,
tokens separated by spaces, and writes the tags the same way.

With ``--chars true`` every word also gets spelling features: its characters run through a character
BiRNN (Lample et al. 2016; sized by ``--char_embed_size``, ``--char_hidden_size``, ``--char_cell``),
so a word never seen in training still shows its capitals and suffixes. The character vocabulary is
every character seen at least twice (``CHAR_MIN_COUNT``) in the training words, in their original
case (``--lowercase`` folds the words only); other characters are ``<unk>`` — so the rare ones of
the training data teach ``<unk>``'s embedding what an unseen character means at prediction time. A
word longer than 32 characters (``MAX_WORD_CHARS``) gives only its first 32 to the character features
(the word itself is kept whole), so one huge token (a URL, a run of dashes) cannot blow up the
(B, T, L) character batch. Without ``--chars`` a ``--char_*`` option
other than its default is refused (it would change nothing).
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data import PAD, UNK, BucketBatcher, DataError, Vocabulary, pad_batch, read_conll
from ...data.readers import conll_fields
from ...data.tokenizer import nfc
from .. import metrics as M
from ..options import OptionError
from ..trainer import StepContext
from .base import Task, batches_of, check_data_config, device_of, refuse_unknown_only
from .classify import check_classes


@dataclass
class TagData:
    """Data options of ``rnnkit train tag``.

    min_freq: rarer words become <unk> (1). lowercase: fold case of words (False).
    valid_fraction: sentences held out of --data without --valid (0.1).
    chars: character-level word features: each word's spelling through a character BiRNN (Lample et al.
    2016), sized by --char_embed_size, --char_hidden_size, --char_cell (False).
    """

    min_freq: int = 1
    lowercase: bool = False
    valid_fraction: float = 0.1
    chars: bool = False

    def __post_init__(self) -> None:
        check_data_config(self, "min_freq")


#: Fewest uses in the training words that give a character an id of its own (rarer ones train ``<unk>``).
CHAR_MIN_COUNT = 2
#: Characters of a word that reach the character features; the rest of a longer word is cut off there.
MAX_WORD_CHARS = 32


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
    later_options = ("chars",)
    #: The character vocabulary (``--chars true``), or None: no character features.
    char_vocab: Vocabulary | None = None

    @classmethod
    def read(cls, paths: Sequence[str], data: TagData) -> list[tuple[list[str], list[str]]]:
        return read_conll(paths[0])

    def _form(self, tokens: Sequence[str]) -> list[str]:
        """The tokens as the vocabularies hold them: in NFC (``nfc``), case kept."""
        return [nfc(t) for t in tokens] if self.nfc else list(tokens)

    def _words(self, tokens: Sequence[str]) -> list[str]:
        tokens = self._form(tokens)
        return [t.lower() for t in tokens] if self.data.lowercase else tokens

    @classmethod
    def classes_of(cls, example) -> Sequence[str]:
        return example[1]

    def fit(self, train) -> None:
        self.words = Vocabulary.build((self._words(toks) for toks, _ in train), min_freq=self.data.min_freq)
        if not self.data.chars:  # (with --chars every word's spelling is read, whatever its word id)
            refuse_unknown_only(len(self.words), "the training sentences", self.data.min_freq)
        # characters in their original case (capitals are much of what they tell), as far as they are used
        self.char_vocab = (Vocabulary.build((w[:MAX_WORD_CHARS] for toks, _ in train for w in self._form(toks)),
                                            min_freq=CHAR_MIN_COUNT) if self.data.chars else None)
        counts = Counter(t for _, tags in train for t in tags)
        self.tags = sorted(counts)
        self.bio = is_bio(self.tags)
        self.majority = counts.most_common(1)[0][0]
        self._set_metric()

    def _set_metric(self) -> None:
        self.main_metric = "entity_f1" if self.bio else "token_accuracy"

    def vocab_state(self) -> dict[str, Any]:
        return {"words": self.words.to_dict(), "tags": self.tags, "majority": self.majority,
                "chars": self.char_vocab.to_dict() if self.char_vocab is not None else None, "nfc": self.nfc}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.words = Vocabulary.from_dict(state["words"])
        self.tags = check_classes(state["tags"], state["majority"], "tags")
        self.majority = state["majority"]
        chars = state.get("chars")  # (checkpoints from before --chars have no entry: no character features)
        self.char_vocab = Vocabulary.from_dict(chars) if chars is not None else None
        self.nfc = bool(state.get("nfc", False))  # (saved before words were normalised: read as they were)
        self.bio = is_bio(self.tags)
        self._set_metric()

    def derived_config(self) -> dict[str, Any]:
        return {"vocab_size": len(self.words), "num_tags": len(self.tags), "padding_idx": PAD,
                "char_vocab_size": len(self.char_vocab) if self.char_vocab is not None else None}

    def check_model_options(self, model: dict[str, Any]) -> None:
        if self.data.chars:
            return
        from ...models.tagger import SequenceTaggerConfig

        defaults = {f.name: f.default for f in dataclasses.fields(SequenceTaggerConfig)}
        unused = [k for k in ("char_embed_size", "char_hidden_size", "char_cell")
                  if model.get(k, defaults[k]) != defaults[k]]
        if unused:
            raise OptionError(f"--{unused[0]} {model[unused[0]]} sizes the character features, which are off: add "
                              f"--chars true")

    def _spell(self, tokens: Sequence[str]) -> tuple[Tensor, Tensor] | None:
        """One sentence's character ids (T, longest word ≤ MAX_WORD_CHARS), 0-padded, and each word's
        character count (T,); None without character features."""
        if self.char_vocab is None:
            return None
        ids = [self.char_vocab.encode(w[:MAX_WORD_CHARS]) or [UNK] for w in self._form(tokens)]  # (none is empty)
        lengths = torch.tensor([len(c) for c in ids], dtype=torch.long)  # (T,)
        out = torch.zeros(len(ids), int(lengths.max()) if ids else 1, dtype=torch.long)  # (T, L)
        for t, c in enumerate(ids):
            out[t, : len(c)] = torch.tensor(c, dtype=torch.long)
        return out, lengths

    @staticmethod
    def _pad_chars(spelt: Sequence[tuple[Tensor, Tensor]], T: int) -> dict[str, Tensor]:
        """``chars`` (B, T, L) padded with 0 and ``char_lengths`` (B, T), 1 at padded words (which the
        model skips), for the sentences of one batch."""
        L = max(c.shape[1] for c, _ in spelt)
        chars = torch.zeros(len(spelt), T, L, dtype=torch.long)
        char_lengths = torch.ones(len(spelt), T, dtype=torch.long)
        for b, (c, n) in enumerate(spelt):
            chars[b, : c.shape[0], : c.shape[1]] = c
            char_lengths[b, : n.shape[0]] = n
        return {"chars": chars, "char_lengths": char_lengths}

    def _encode(self, sentences, what: str = "the validation data"):
        """Word ids, tag ids, and each sentence's spelling (``_spell``; None without character features)."""
        index = {t: i for i, t in enumerate(self.tags)}
        unknown = sorted({t for _, tags in sentences for t in tags if t not in index})
        if unknown:
            raise DataError(f"{what} has tags not seen in training: {unknown[:5]} (known: {self.tags[:10]}); "
                            f"the model can only predict the tags it was trained on")
        return ([self.words.encode(self._words(toks)) for toks, _ in sentences],
                [[index[t] for t in tags] for _, tags in sentences],
                [self._spell(toks) for toks, _ in sentences])

    def set_data(self, train, valid) -> None:
        if train is not None:
            self.train_x, self.train_y, self.train_c = self._encode(train, "the training data")
        if valid is not None:
            self.valid_x, self.valid_y, self.valid_c = self._encode(valid)

    def train_batches(self, epoch: int) -> list[dict[str, Tensor]]:
        batcher = BucketBatcher([len(x) for x in self.train_x], self.batch_size, seed=self.seed)
        batcher.set_epoch(epoch)
        out = []
        for idx in batcher:
            x, lengths = pad_batch([self.train_x[i] for i in idx])
            y, _ = pad_batch([self.train_y[i] for i in idx])
            batch = {"x": x, "lengths": lengths, "y": y}
            if self.char_vocab is not None:  # (B, T, L) and (B, T): batch first, so DDP shards them too
                batch.update(self._pad_chars([self.train_c[i] for i in idx], x.shape[1]))
            out.append(batch)
        return out

    def count_unit(self, model: nn.Module) -> str:
        return "sentences" if getattr(model, "crf", None) is not None else "tokens"  # (as loss counts them)

    def loss(self, model: nn.Module, batch: dict, carry: Any, ctx: StepContext):
        x, lengths, y = batch["x"], batch["lengths"], batch["y"]
        chars = {k: batch[k] for k in ("chars", "char_lengths") if k in batch}
        if getattr(model, "crf", None) is not None:  # the model's mean over sentences, summed back
            return model.loss(x, y, lengths, **chars) * len(lengths), len(lengths), None
        emissions = model(x, lengths, **chars)  # (B, T, K)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        return F.cross_entropy(emissions[mask], y[mask], reduction="sum"), int(mask.sum()), None

    def _predict_ids(self, model: nn.Module, xs: list[list[int]],
                     spelt: Sequence[tuple[Tensor, Tensor] | None] | None = None) -> list[list[int]]:
        dev = device_of(model)
        out: list[list[int]] = [[] for _ in xs]
        order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
        for idx in batches_of(order, 256):
            x, lengths = pad_batch([xs[i] for i in idx])
            chars = {}
            if self.char_vocab is not None:
                chars = {k: v.to(dev) for k, v in self._pad_chars([spelt[i] for i in idx], x.shape[1]).items()}
            pred = model.predict(x.to(dev), lengths.to(dev), **chars).cpu()  # (B, T), -1 past each length
            for row, i in enumerate(idx):
                out[i] = pred[row, : len(xs[i])].tolist()
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        pred = self._predict_ids(model, self.valid_x, self.valid_c)
        flat_p = [t for s in pred for t in s]
        flat_g = [t for s in self.valid_y for t in s]
        out = {}
        if self.bio:  # (the main metric first, as every task reports it)
            names = lambda seqs: [[self.tags[i] for i in s] for s in seqs]  # noqa: E731
            prf = M.entity_prf(names(pred), names(self.valid_y))
            out.update(entity_f1=prf["f1"], entity_precision=prf["precision"], entity_recall=prf["recall"])
        out["token_accuracy"] = M.accuracy(flat_p, flat_g)
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
        sentences = [conll_fields(line) for line in lines]  # (as the training file's tokens were split)
        keep = [i for i, s in enumerate(sentences) if s]
        xs = [self.words.encode(self._words(sentences[i])) for i in keep]
        spelt = [self._spell(sentences[i]) for i in keep]  # the words as written: case kept
        pred = self._predict_ids(model, xs, spelt) if keep else []
        out = [""] * len(lines)
        for i, p in zip(keep, pred):
            out[i] = " ".join(self.tags[t] for t in p)
        return out
