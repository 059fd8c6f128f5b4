"""``rnnkit train translate``: sequence to sequence (encoder–decoder with attention) on a parallel
corpus — two aligned files (``--data train.src train.tgt``) or one TSV of ``source<TAB>target``.

The target is trained with teacher forcing under the model's own schedule: the trainer hands the
step to ``loss``, which asks ``Seq2Seq.teacher_forcing_at(step)`` for the ratio (scheduled sampling
when the config sets ``teacher_forcing_schedule``). Evaluation decodes greedily (or by beam search,
``--beam_width``) and reports BLEU (main metric, sacrebleu), exact match and the teacher-forced loss,
next to the copy-the-source baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ...data import BOS, EOS, PAD, BucketBatcher, build_tokenizer, pad_batch, read_parallel, tokenizer_from_dict
from .. import metrics as M
from ..trainer import StepContext
from .base import Task, as_written, batches_of, check_data_config, device_of, refuse_unknown_only
from .classify import encode_texts


@dataclass
class TranslateData:
    """Data options of ``rnnkit train translate``.

    tokenizer: "word" or "char", for both sides (each side has its own vocabulary) ("word").
    min_freq: rarer tokens become <unk> (1). lowercase: fold case (False).
    beam_width: evaluation and prediction decode by beam search of this width; 1 = greedy (1).
    max_length: longest output in decoding (0: twice the longest training target + 5).
    valid_fraction: pairs held out of --data without --valid (0.1).
    """

    tokenizer: Literal["char", "word"] = "word"
    min_freq: int = 1
    lowercase: bool = False
    beam_width: int = 1
    max_length: int = 0
    valid_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_data_config(self, "min_freq", "beam_width")
        if self.max_length < 0:
            raise ValueError(f"TranslateData: max_length must be >= 0 (0: twice the longest training target + 5), "
                             f"got {self.max_length}")


class TranslateTask(Task):
    name = "translate"
    model_type = "seq2seq"
    data_config = TranslateData
    derived = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")
    main_metric = "bleu"
    maximize = True
    max_files = 2
    train_defaults = {"lr": 3e-3, "batch_size": 64, "epochs": 10}
    model_defaults = {"embed_size": 64, "hidden_size": 128}

    @classmethod
    def read(cls, paths: Sequence[str], data: TranslateData) -> list[tuple[str, str]]:
        return read_parallel(paths[0], paths[1] if len(paths) > 1 else None)

    def _fit_side(self, texts: Sequence[str]):
        return build_tokenizer(self.data.tokenizer, texts, min_freq=self.data.min_freq, lowercase=self.data.lowercase,
                               nfc=self.nfc)

    def fit(self, train) -> None:
        self.src_tok = self._fit_side([s for s, _ in train])
        self.tgt_tok = self._fit_side([t for _, t in train])
        refuse_unknown_only(len(self.src_tok), "the training sources", self.data.min_freq)
        refuse_unknown_only(len(self.tgt_tok), "the training targets", self.data.min_freq)
        longest = max(len(self.tgt_tok.encode(t)) for _, t in train)
        self.max_length = self.data.max_length or 2 * longest + 5

    def vocab_state(self) -> dict[str, Any]:
        return {"source": self.src_tok.to_dict(), "target": self.tgt_tok.to_dict(), "max_length": self.max_length}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.src_tok = tokenizer_from_dict(state["source"])
        self.tgt_tok = tokenizer_from_dict(state["target"])
        self.max_length = state["max_length"]

    def derived_config(self) -> dict[str, Any]:
        return {"src_vocab_size": len(self.src_tok), "tgt_vocab_size": len(self.tgt_tok),
                "pad_id": PAD, "bos_id": BOS, "eos_id": EOS}

    def _encode(self, pairs):
        src = encode_texts(self.src_tok, [s for s, _ in pairs])
        tgt = [self.tgt_tok.encode(t, eos=True) for _, t in pairs]
        return src, tgt, [t for _, t in pairs], [s for s, _ in pairs]

    def set_data(self, train, valid) -> None:
        if train is not None:
            self.train_src, self.train_tgt, _, _ = self._encode(train)
        if valid is not None:
            self.valid_src, self.valid_tgt, self.valid_refs, self.valid_sources = self._encode(valid)

    def train_batches(self, epoch: int) -> list[dict[str, Tensor]]:
        batcher = BucketBatcher([len(s) for s in self.train_src], self.batch_size, seed=self.seed)
        batcher.set_epoch(epoch)
        out = []
        for idx in batcher:
            src, src_lengths = pad_batch([self.train_src[i] for i in idx])
            tgt, _ = pad_batch([self.train_tgt[i] for i in idx])
            out.append({"src": src, "src_lengths": src_lengths, "tgt": tgt})
        return out

    def loss(self, model: nn.Module, batch: dict, carry: Any, ctx: StepContext):
        ratio = model.teacher_forcing_at(ctx.step)  # the model's scheduled-sampling schedule
        logits, _ = model(batch["src"], batch["tgt"], src_lengths=batch["src_lengths"], teacher_forcing_ratio=ratio)
        tgt = batch["tgt"]
        loss = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD, reduction="sum")
        return loss, int((tgt != PAD).sum()), None

    def _translate(self, model: nn.Module, srcs: list[list[int]]) -> list[str]:
        dev, out = device_of(model), [""] * len(srcs)
        order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
        method = "beam" if self.data.beam_width > 1 else "greedy"
        for idx in batches_of(order, 128):
            src, lengths = pad_batch([srcs[i] for i in idx])
            dec = model.generate(src.to(dev), lengths.to(dev), method=method, max_length=self.max_length,
                                 beam_width=self.data.beam_width)
            for row, i in enumerate(idx):
                out[i] = self.tgt_tok.decode(dec.tokens[row].tolist())
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        hyps = self._translate(model, self.valid_src)
        total, n = 0.0, 0
        dev = device_of(model)
        for idx in batches_of(range(len(self.valid_src)), 128):
            src, lengths = pad_batch([self.valid_src[i] for i in idx])
            tgt, _ = pad_batch([self.valid_tgt[i] for i in idx])
            logits, _ = model(src.to(dev), tgt.to(dev), src_lengths=lengths.to(dev), teacher_forcing_ratio=1.0)
            total += float(F.cross_entropy(logits.transpose(1, 2), tgt.to(dev), ignore_index=PAD, reduction="sum"))
            n += int((tgt != PAD).sum())
        refs = self._references()
        order = M.bleu_order(refs)
        return {"bleu": M.bleu(hyps, refs, order), "exact_match": M.exact_match(hyps, refs), "loss": total / n,
                "bleu_order": order, **self.baseline()}

    def _references(self) -> list[str]:
        """The validation targets as the target tokenizer writes text (case, spacing), unknown words kept."""
        return [as_written(self.tgt_tok, t) for t in self.valid_refs]

    def baseline(self) -> dict[str, float]:
        refs = self._references()
        copies = [as_written(self.tgt_tok, s) for s in self.valid_sources]  # written as an output would be
        return {"copy_source_bleu": M.bleu(copies, refs, M.bleu_order(refs)),
                "copy_source_exact_match": M.exact_match(copies, refs)}

    def predict(self, model: nn.Module, lines: Sequence[str]) -> list[str]:
        """A translation per line; a blank line gets an empty line back (there is nothing to translate), as
        the other tasks answer it."""
        keep = [i for i, line in enumerate(lines) if line.strip()]
        out = [""] * len(lines)
        sources = [lines[i].strip() for i in keep]  # (stripped, as read_parallel strips a file's sentences)
        for i, hyp in zip(keep, self._translate(model, encode_texts(self.src_tok, sources))):
            out[i] = hyp
        return out
