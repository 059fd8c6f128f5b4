"""``rnnkit train caption``: images → captions (one-to-many), from an ``.npz`` (arrays ``images`` and
``captions``) or a folder of images with ``captions.tsv``.

The ``ImageCaptioner``'s CNN encodes each image once; its decoder is trained with teacher forcing on
the caption followed by <eos>. Evaluation decodes greedily (or by beam search, ``--beam_width``) and
reports exact match (main metric) and BLEU next to the baseline that always answers the most
frequent training caption. ``predict`` reads one image path per line and writes its caption.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data import BOS, EOS, PAD, DataError, build_tokenizer, pad_batch, read_captions, tokenizer_from_dict
from ...data.captions import Captions, images_to_nchw
from .. import metrics as M
from ..trainer import StepContext
from .base import Task, as_written, batches_of, check_data_config, device_of


@dataclass
class CaptionData:
    """Data options of ``rnnkit train caption``.

    tokenizer: "word" or "char" for the captions ("word"). min_freq: rarer tokens become <unk> (1).
    beam_width: decoding by beam search of this width; 1 = greedy (1).
    max_length: longest caption decoded (0: twice the longest training caption + 5).
    valid_fraction: images held out of --data without --valid (0.1).
    """

    tokenizer: Literal["char", "word"] = "word"
    min_freq: int = 1
    beam_width: int = 1
    max_length: int = 0
    valid_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_data_config(self, "min_freq", "beam_width")


class CaptionTask(Task):
    name = "caption"
    model_type = "captioner"
    data_config = CaptionData
    derived = ("vocab_size", "image_size", "in_channels", "pad_id", "bos_id", "eos_id")
    main_metric = "exact_match"
    maximize = True
    train_defaults = {"lr": 3e-3, "batch_size": 64, "epochs": 10}

    @classmethod
    def read(cls, paths: Sequence[str], data: CaptionData) -> Captions:
        return read_captions(paths[0])

    def fit(self, train: Captions) -> None:
        self.tokenizer = build_tokenizer(self.data.tokenizer, train.captions, min_freq=self.data.min_freq, nfc=self.nfc)
        self.image_shape = tuple(train.images.shape[1:])  # (C, H, W)
        self.most_common = Counter(train.captions).most_common(1)[0][0]
        longest = max(len(self.tokenizer.encode(c)) for c in train.captions)
        self.max_length = self.data.max_length or 2 * longest + 5

    def vocab_state(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_dict(), "image_shape": list(self.image_shape),
                "most_common": self.most_common, "max_length": self.max_length}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.tokenizer = tokenizer_from_dict(state["tokenizer"])
        self.image_shape = tuple(state["image_shape"])
        self.most_common, self.max_length = state["most_common"], state["max_length"]

    def derived_config(self) -> dict[str, Any]:
        C, H, W = self.image_shape
        return {"vocab_size": len(self.tokenizer), "image_size": (H, W), "in_channels": C,
                "pad_id": PAD, "bos_id": BOS, "eos_id": EOS}

    def _check(self, data: Captions, what: str, path: str | None = None) -> Captions:
        if tuple(data.images.shape[1:]) != self.image_shape:
            raise DataError(f"{what}: images of shape (C, H, W) = {tuple(data.images.shape[1:])}, "
                            f"the model reads {self.image_shape}", path)
        return data

    def set_data(self, train, valid) -> None:
        if train is not None:
            self.train = self._check(train, "the training data")
            self.train_tgt = [self.tokenizer.encode(c, eos=True) for c in train.captions]
        if valid is not None:
            self.valid = self._check(valid, "the validation data")
            self.valid_refs = [as_written(self.tokenizer, c) for c in valid.captions]

    def train_batches(self, epoch: int) -> list[dict[str, Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_tgt), generator=g).tolist()
        out = []
        for idx in batches_of(order, self.batch_size):
            targets, _ = pad_batch([self.train_tgt[i] for i in idx])
            out.append({"images": self.train.images[idx], "targets": targets})
        return out

    def loss(self, model: nn.Module, batch: dict, carry: Any, ctx: StepContext):
        logits = model(batch["images"], batch["targets"])  # (B, T, V)
        t = batch["targets"]
        return F.cross_entropy(logits.transpose(1, 2), t, ignore_index=PAD, reduction="sum"), int((t != PAD).sum()), None

    def _caption(self, model: nn.Module, images: Tensor) -> list[str]:
        dev, out = device_of(model), []
        method = "beam" if self.data.beam_width > 1 else "greedy"
        for idx in batches_of(range(len(images)), 256):
            dec = model.generate(images[idx].to(dev), method=method, max_length=self.max_length,
                                 beam_width=self.data.beam_width)
            out += [self.tokenizer.decode(row.tolist()) for row in dec.tokens]
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        hyps, order = self._caption(model, self.valid.images), M.bleu_order(self.valid_refs)
        return {"exact_match": M.exact_match(hyps, self.valid_refs), "bleu": M.bleu(hyps, self.valid_refs, order),
                "bleu_order": order, **self.baseline()}

    def baseline(self) -> dict[str, float]:
        const = [as_written(self.tokenizer, self.most_common)] * len(self.valid_refs)
        return {"most_common_exact_match": M.exact_match(const, self.valid_refs),
                "most_common_bleu": M.bleu(const, self.valid_refs, M.bleu_order(self.valid_refs))}

    def predict(self, model: nn.Module, lines: Sequence[str]) -> list[str]:
        import matplotlib.image as mpimg

        from ...data.errors import check_file

        paths = [line.strip() for line in lines]
        keep = [i for i, p in enumerate(paths) if p]  # a blank line gets an empty line back, as in the other tasks
        images = []
        for p in (paths[i] for i in keep):
            try:
                img = np.asarray(mpimg.imread(check_file(p)))
            except DataError:
                raise
            except Exception as e:  # noqa: BLE001 - any decoder failure is a bad image file
                raise DataError(f"cannot read image ({type(e).__name__}: {e})", p) from None
            image = images_to_nchw(img[None], p)[0]
            self._check(Captions(image[None], [""]), "image", p)  # each named by its file, before they are stacked
            images.append(image)
        out = [""] * len(lines)
        if images:
            batch = torch.stack(images)
            for i, caption in zip(keep, self._caption(model, batch)):
                out[i] = caption
        return out
