"""Many-to-many, aligned: ``SequenceTagger`` gives every token a tag (named entities, parts of speech).

    tokens (B, T) ─ Embedding ─→ (B, T, E) ┐
    chars (B, T, L) ─ char BiRNN per word ─→ (B, T, 2·Hc) ┴ concat ─ recurrent stack ─→ (B, T, D·H)
    ─ Linear ─→ emissions (B, T, K) ─ per-token softmax, or a linear-chain CRF (``rnnkit.models.crf``)

The character part is optional (``char_vocab_size``): each word's characters run through their own
bidirectional recurrent layer and the two final states become word features (Lample et al. 2016), so
words never seen in training still carry their spelling (capitals, suffixes).

With ``decoder="softmax"`` every tag is predicted on its own (cross-entropy per token); with
``decoder="crf"`` the tags of a sentence are scored jointly with learned transitions (negative
log-likelihood per sentence by the forward algorithm, prediction by Viterbi).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_ids, check_not_empty, make_recurrent, padding_mask, prepare_lengths, top_state
from .config import (Cell, ConfiguredModel, Engine, RecurrentOptions, check_dropout, check_positive, check_types,
                     inference)
from .crf import LinearChainCRF


@dataclass(kw_only=True)
class SequenceTaggerConfig(RecurrentOptions):
    """Everything needed to rebuild a ``SequenceTagger``.

    vocab_size: word ids in [0, vocab_size) (required). num_tags: tags K (required).
    embed_size: word embedding width (64). padding_idx: embedding row kept at zero (None).
    hidden_size: H per direction (128). num_layers: stacked layers (1). cell: lstm | gru | rnn_tanh | rnn_relu.
    bidirectional: read the sentence both ways (True — a tag usually depends on the words after it too).
    decoder: "softmax" (each tag on its own) or "crf" (tags scored jointly, Viterbi decoding).
    char_vocab_size: set to add character-level word features; None leaves them out (None).
    char_embed_size: character embedding width (16). char_hidden_size: the char BiRNN's H per direction (32).
    char_cell: the char BiRNN's cell ("lstm").
    dropout: on the word representations, between layers and before the output layer (0.0).
    engine: the recurrent engine, "auto" | "reference" | "fused" | "native" ("auto").
    The variant options of ``RecurrentOptions`` go to the word-level layers; the char BiRNN, a one-layer
    feature extractor of its own cell kind, stays plain.
    """

    vocab_size: int
    num_tags: int
    embed_size: int = 64
    padding_idx: int | None = None
    hidden_size: int = 128
    num_layers: int = 1
    cell: Cell = "lstm"
    bidirectional: bool = True
    decoder: Literal["softmax", "crf"] = "softmax"
    char_vocab_size: int | None = None
    char_embed_size: int = 16
    char_hidden_size: int = 32
    char_cell: Cell = "lstm"
    dropout: float = 0.0
    engine: Engine = "auto"

    def __post_init__(self) -> None:
        check_types(self)
        self.check_recurrent_options(self.cell)
        check_positive(self, "vocab_size", "num_tags", "embed_size", "hidden_size", "num_layers", "char_vocab_size",
                       "char_embed_size", "char_hidden_size")
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.vocab_size:
            raise ValueError(f"SequenceTaggerConfig: padding_idx must be in [0, {self.vocab_size}), "
                             f"got {self.padding_idx}")
        check_dropout(self)


class CharWordEncoder(nn.Module):
    """Spelling features of every word: the characters of each real word (B, T, L) run through a
    bidirectional recurrent layer; its two final states are the word's features (B, T, 2·Hc), zero at
    padded words. Only the real words are run (packed into one batch of N words)."""

    def __init__(self, char_vocab_size: int, embed_size: int, hidden_size: int, cell: str, engine: str) -> None:
        super().__init__()
        self.char_vocab_size = char_vocab_size
        self.embedding = nn.Embedding(char_vocab_size, embed_size)
        self.rnn = make_recurrent(cell, embed_size, hidden_size, bidirectional=True, engine=engine)
        self.size = 2 * hidden_size

    def forward(self, chars: Tensor, char_lengths: Tensor | None, word_mask: Tensor) -> Tensor:
        owner = "SequenceTagger"
        B, T = word_mask.shape
        # every character slot of a real word is embedded, padding after the word's end included
        check_ids(owner, "chars", chars, self.char_vocab_size, 3, "(B, T, max_word_length) of character ids",
                  "character ids", shape=(B, T, None), mask=word_mask.unsqueeze(2))
        L = chars.shape[2]
        if L == 0:
            raise ValueError(f"{owner}: chars has no characters per word (shape {tuple(chars.shape)})")
        if char_lengths is None:
            char_lengths = torch.full((B, T), L, dtype=torch.long)
        check_ids(owner, "char_lengths", char_lengths, L + 1, 2, "(B, T) of word lengths in characters",
                  "word lengths", shape=(B, T), mask=word_mask)
        short = word_mask & (char_lengths.to(word_mask.device) < 1)
        if bool(short.any()):
            where = tuple(int(i) for i in short.nonzero()[0])
            raise ValueError(f"{owner}: char_lengths must be >= 1 for every real word, got 0 at position {where}")
        word_chars = chars.to(word_mask.device)[word_mask]  # (N, L), the real words only
        n_chars = char_lengths.to(word_mask.device)[word_mask]  # (N,)
        _, state = self.rnn(self.embedding(word_chars), lengths=n_chars.cpu())
        feats = top_state(state, bidirectional=True)  # (N, 2·Hc)
        out = feats.new_zeros(B, T, self.size)
        out[word_mask] = feats
        return out


class SequenceTagger(ConfiguredModel):
    """Per-token tagger; keyword arguments are the fields of ``SequenceTaggerConfig``.

    Arguments of every method: ``tokens`` (B, T) word ids; ``lengths`` (B,) real words per sentence
    (default all T); with character features, ``chars`` (B, T, L) character ids of each word and
    ``char_lengths`` (B, T) its characters (default all L; ignored at padded words).

    ``forward`` → emissions (B, T, K): per-token tag scores (logits for softmax, CRF emissions).
    ``loss(tokens, tags, ...)`` → softmax: mean cross-entropy over real tokens; crf: mean negative
    log-likelihood per sentence. ``tags`` (B, T) in [0, K); values past a sentence's length are ignored.
    ``predict`` → tags (B, T) long, −1 past each length (argmax per token, or Viterbi for the CRF).
    """

    config_class = SequenceTaggerConfig

    def build(self, c: SequenceTaggerConfig) -> None:
        self.embedding = nn.Embedding(c.vocab_size, c.embed_size, padding_idx=c.padding_idx)
        self.chars = None
        features = c.embed_size
        if c.char_vocab_size is not None:
            self.chars = CharWordEncoder(c.char_vocab_size, c.char_embed_size, c.char_hidden_size, c.char_cell,
                                         c.engine)
            features += self.chars.size
        self.drop = nn.Dropout(c.dropout)
        self.rnn = make_recurrent(c.cell, features, c.hidden_size, c.num_layers, c.dropout, c.bidirectional,
                                  c.engine, c.recurrent_options())
        self.head = nn.Linear(c.hidden_size * (2 if c.bidirectional else 1), c.num_tags)
        self.crf = LinearChainCRF(c.num_tags) if c.decoder == "crf" else None

    def _encode(self, tokens, lengths, chars, char_lengths) -> tuple[Tensor, Tensor | None, Tensor]:
        """Emissions (B, T, K), checked lengths (or None), and the (B, T) mask of real words."""
        owner = "SequenceTagger"
        check_ids(owner, "tokens", tokens, self._config.vocab_size, 2, "(B, T) of word ids", "token ids")
        B, T = tokens.shape
        if T == 0:
            raise ValueError(f"{owner}: tokens has no time steps (shape {tuple(tokens.shape)})")
        lengths = prepare_lengths(owner, lengths, B, T)
        device = self.embedding.weight.device
        mask = padding_mask(lengths, B, T, device)
        x = self.embedding(tokens.to(device))  # (B, T, E)
        if self.chars is not None:
            if chars is None:
                raise ValueError(f"{owner}: chars (B, T, L) is required: this tagger was built with "
                                 f"char_vocab_size={self._config.char_vocab_size}")
            x = torch.cat([x, self.chars(chars, char_lengths, mask)], dim=2)  # (B, T, E + 2·Hc)
        elif chars is not None or char_lengths is not None:
            raise ValueError(f"{owner}: chars given, but this tagger has no character features "
                             f"(build it with char_vocab_size set)")
        o, _ = self.rnn(self.drop(x), lengths=lengths)  # (B, T, D·H)
        return self.head(self.drop(o)), lengths, mask

    def forward(self, tokens: Tensor, lengths=None, chars: Tensor | None = None,
                char_lengths: Tensor | None = None) -> Tensor:
        """Emissions (B, T, num_tags)."""
        return self._encode(tokens, lengths, chars, char_lengths)[0]

    def loss(self, tokens: Tensor, tags: Tensor, lengths=None, chars: Tensor | None = None,
             char_lengths: Tensor | None = None) -> Tensor:
        check_not_empty("SequenceTagger.loss", "tokens", tokens)
        emissions, lengths, mask = self._encode(tokens, lengths, chars, char_lengths)
        check_ids("SequenceTagger.loss", "tags", tags, self._config.num_tags, 2, "(B, T) of tag ids", "tag ids",
                  shape=tokens.shape, mask=mask)
        tags = tags.to(emissions.device)
        if self.crf is not None:
            return self.crf.neg_log_likelihood(emissions, tags, lengths).mean()
        return F.cross_entropy(emissions[mask], tags[mask])

    @inference
    def predict(self, tokens: Tensor, lengths=None, chars: Tensor | None = None,
                char_lengths: Tensor | None = None) -> Tensor:
        """Tags (B, T), −1 past each length; in eval mode (no dropout)."""
        emissions, lengths, mask = self._encode(tokens, lengths, chars, char_lengths)
        if self.crf is not None:
            return self.crf.decode(emissions, lengths)[0]
        return emissions.argmax(dim=2).masked_fill(~mask, -1)
