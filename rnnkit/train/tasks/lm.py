"""``rnnkit train lm``: a language model on a text file, trained by truncated BPTT (char-rnn style).

The training text becomes one id stream cut into ``batch_size`` rows; each step trains on the next
``bptt`` tokens of every row, starting from the state the previous chunk ended in (detached by the
trainer). Each epoch starts the rows at a seeded random offset in [0, bptt), so chunk boundaries move
between epochs. Validation reads the whole validation text as ``eval_batch`` streams (state carried
along each; the few tokens left over continue the last one) and predicts every token but the first:
it reports mean NLL, perplexity and bits per character (or per token) next to the
unigram baseline fitted on the training text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data import SPECIALS, DataError, StreamBatches, build_tokenizer, read_text, tokenizer_from_dict
from ...models.decoding import select_rows, swap_layers_rows
from .. import metrics as M
from ..options import OptionError
from ..trainer import StepContext
from .base import Task, check_data_config, device_of, refuse_unknown_only


@dataclass
class LMData:
    """Data options of ``rnnkit train lm``.

    tokenizer: "char" (one token per character) or "word" (whitespace-separated words).
    min_freq: rarer tokens in the training text become <unk> (1). bptt: steps per truncated-BPTT chunk
    (100). valid_fraction: the tail of --data held out when --valid is not given (0.1).
    eval_batch: parallel streams in evaluation (8).
    """

    tokenizer: Literal["char", "word"] = "char"
    min_freq: int = 1
    bptt: int = 100
    valid_fraction: float = 0.1
    eval_batch: int = 8

    def __post_init__(self) -> None:
        check_data_config(self, "min_freq", "bptt", "eval_batch")


class LanguageModelTask(Task):
    name = "lm"
    model_type = "language_model"
    data_config = LMData
    derived = ("vocab_size", "padding_idx")
    main_metric = "loss"
    maximize = False
    carry_batch_dim = 1  # (num_layers, B, H)
    train_defaults = {"lr": 3e-3, "batch_size": 32, "eval_every": 200}  # (clip_norm: TrainConfig's 1.0)
    model_defaults = {"embed_size": 64, "hidden_size": 256, "num_layers": 1}
    train_ids: Tensor | None = None
    _saved_counts: list[int] | None = None  # the training text's symbol counts, from a checkpoint

    @classmethod
    def read(cls, paths: Sequence[str], data: LMData) -> str:
        return read_text(paths[0])

    @property
    def unit(self) -> str:
        return "char" if self.data.tokenizer == "char" else "token"

    def fit(self, train: str) -> None:
        self.tokenizer = build_tokenizer(self.data.tokenizer, train, min_freq=self.data.min_freq, nfc=self.nfc)
        if self.data.tokenizer != "char":
            refuse_unknown_only(len(self.tokenizer), "the training text", self.data.min_freq)

    def sizes(self, train: str, valid: str) -> dict[str, int]:
        """Tokens per split (characters for a character model), as encoded by ``set_data``."""
        return {"train": len(self.train_ids), "valid": len(self.valid_ids)}

    def vocab_state(self) -> dict[str, Any]:
        state = {"tokenizer": self.tokenizer.to_dict()}
        counts = self._train_counts()
        if counts is not None:  # so that a reloaded model's unigram baseline is still the training text's
            state["unigram_counts"] = counts
        return state

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.tokenizer = tokenizer_from_dict(state["tokenizer"])
        counts = state.get("unigram_counts")
        ok = (isinstance(counts, list) and len(counts) == len(self.tokenizer)
              and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts))
        self._saved_counts = counts if ok else None  # (a checkpoint from before they were saved: none)

    def _train_counts(self) -> list[int] | None:
        """How often each symbol occurs in the training text: from the text, else from the checkpoint."""
        if self.train_ids is not None:
            return torch.bincount(self.train_ids, minlength=len(self.tokenizer)).tolist()
        return self._saved_counts

    def derived_config(self) -> dict[str, Any]:
        return {"vocab_size": len(self.tokenizer), "padding_idx": None}

    def encode(self, text: str) -> Tensor:
        return torch.tensor(self.tokenizer.encode(text), dtype=torch.long)

    def set_data(self, train: str | None, valid: str | None) -> None:
        self.train_ids = None if train is None else self.encode(train)
        self.valid_ids = None if valid is None else self.encode(valid)
        from ...data import DataError

        if self.train_ids is not None and len(self.train_ids) < self.batch_size + 1:
            raise DataError(f"the training text has {len(self.train_ids)} tokens, too few for "
                            f"{self.batch_size} streams (lower --batch_size)")
        if self.valid_ids is not None and len(self.valid_ids) < 2:  # checked now, not after training
            raise DataError(f"the validation text has {len(self.valid_ids)} {self.unit}(s) after tokenisation; "
                            f"scoring a model needs at least 2")
        self._unigram = None

    # -- training --

    def train_batches(self, epoch: int) -> list[dict[str, Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        offset = int(torch.randint(0, self.data.bptt, (1,), generator=g)) if epoch > 0 else 0
        ids = self.train_ids[offset:] if len(self.train_ids) - offset > self.batch_size + 1 else self.train_ids
        return [{"x": x, "y": y} for x, y in StreamBatches(ids, self.batch_size, self.data.bptt)]

    def loss(self, model: nn.Module, batch: dict, carry: Any, ctx: StepContext) -> tuple[Tensor, int, Any]:
        logits, state = model(batch["x"], carry)  # (B, t, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten(), reduction="sum")
        return loss, batch["y"].numel(), state

    # -- evaluation --

    def mean_nll(self, model: nn.Module, ids: Tensor) -> float:
        """Mean NLL of every token of ``ids`` but the first: ``eval_batch`` streams read in parallel
        (each from a fresh state, carried across its chunks), then the tokens the streams leave over
        (fewer than ``eval_batch``), read on from the last stream's state."""
        rows = max(1, min(self.data.eval_batch, (len(ids) - 1) // 2))
        stream = StreamBatches(ids, rows, max(self.data.bptt, 200))
        dev = device_of(model)
        total, n, state = 0.0, 0, None

        def score(x: Tensor, y: Tensor, state):
            logits, state = model(x.to(dev), state)
            return float(F.cross_entropy(logits.flatten(0, 1), y.to(dev).flatten(), reduction="sum")), state

        for x, y in stream:
            nll, state = score(x, y, state)
            total, n = total + nll, n + y.numel()
        end = rows * stream.steps  # the last stream's last input; what follows it was not predicted yet
        if end + 1 < len(ids):
            last_row = swap_layers_rows(select_rows(swap_layers_rows(state), torch.tensor([rows - 1], device=dev)))
            nll, _ = score(ids[end : len(ids) - 1].unsqueeze(0), ids[end + 1 :].unsqueeze(0), last_row)
            total, n = total + nll, n + len(ids) - 1 - end
        return total / n

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        nll = self.mean_nll(model, self.valid_ids)
        out = {"loss": nll, "perplexity": M.perplexity(nll), f"bits_per_{self.unit}": M.bits_per_token(nll)}
        out.update(self.baseline())
        return out

    def baseline(self) -> dict[str, float]:
        """The unigram model of the training text, scored on the validation text (none when neither the
        text nor its counts are known: fitting it on the text it scores would flatter it)."""
        if self._unigram is None:
            counts = self._train_counts()
            if counts is None:
                return {}
            self._unigram = M.unigram_bits_from_counts(counts, self.valid_ids[1:])  # the tokens the model predicts
        return {f"unigram_bits_per_{self.unit}": self._unigram}

    # -- use --

    def _words(self) -> Sequence[str]:
        """The vocabulary's tokens after the special ones, most frequent first."""
        return self.tokenizer.vocab.tokens[len(SPECIALS):]

    def default_prompt(self) -> str:
        """What ``rnnkit generate`` continues without ``--prompt``: a newline for a character model; a word
        model drops whitespace, so its most frequent word."""
        if self.data.tokenizer == "char":
            return "\n"
        words = self._words()
        if not words:
            raise DataError("the model's vocabulary has no words (no word of its training text reached "
                            "--min_freq): give a --prompt")
        return words[0]

    def join_prompt(self, prompt: str, continuation: str) -> str:
        """The prompt followed by its continuation, as one text (words apart by a space)."""
        if self.data.tokenizer == "char" or not continuation or prompt[-1:].isspace():
            return prompt + continuation
        return f"{prompt} {continuation}"

    def generate(self, model: nn.Module, prompt: str, length: int, *, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str:
        """``prompt`` continued by ``length`` tokens (temperature 0: greedy)."""
        ids = self.encode(prompt)
        if len(ids) == 0:
            raise OptionError(f"--prompt {prompt!r} is empty after tokenisation (a word model reads no word in it); "
                              f"give some text, or leave --prompt out")
        g = None if seed is None else torch.Generator(device=device_of(model)).manual_seed(seed)
        method = "greedy" if temperature == 0 else "sample"
        kwargs = {} if method == "greedy" else {"temperature": temperature, "top_k": top_k, "top_p": top_p, "generator": g}
        out = model.generate(ids.to(device_of(model)), length, method=method, never=self._never_generated(),
                             **kwargs)
        return self.tokenizer.decode(out.tokens[0].tolist())

    def _never_generated(self) -> list[int]:
        """The special tokens the training text never held (all four for a character model; <unk> stays
        where rare words became it): the model was never taught to predict them, but gives them some mass,
        and one drawn printed as "<pad>" or ended the text at "<eos>". Without the counts (a checkpoint from
        before they were saved), the four but <unk>."""
        counts = self._train_counts()
        if counts is None:
            return [i for i, token in enumerate(SPECIALS) if token != "<unk>"]
        return [i for i in range(len(SPECIALS)) if counts[i] == 0]

    def predict(self, model: nn.Module, lines: Sequence[str]) -> list[str]:
        """Bits per token of each line under the model (each line scored on its own); a line of fewer than
        two tokens has no token to score and gets an empty line back, as a blank line does in every task."""
        out = []
        for line in lines:
            ids = self.encode(line)
            if len(ids) < 2:
                out.append("")
                continue
            logits, _ = model(ids[:-1].unsqueeze(0).to(device_of(model)))
            nll = float(F.cross_entropy(logits[0], ids[1:].to(logits.device)))
            out.append(f"{nll / math.log(2):.4f}")
        return out
