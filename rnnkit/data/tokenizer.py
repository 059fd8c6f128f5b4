"""Tokenizers: text ↔ tokens ↔ ids. Character, word (whitespace, optional punctuation split, minimum
frequency) and byte-level BPE (through the optional ``tokenizers`` package).

Every tokenizer has the same small surface::

    tok = CharTokenizer.fit(texts)            # or WordTokenizer.fit(texts, min_freq=2), BPETokenizer.fit(texts, vocab_size=500)
    tok.split("text")  -> list[str]           # tokens
    tok.join(tokens)   -> str                 # inverse of split (exact for char and BPE; words are joined by spaces)
    tok.encode("text", bos=False, eos=False) -> list[int]
    tok.decode(ids)    -> str                 # drops pad/bos/eos and stops at the first eos
    tok.vocab          -> Vocabulary          # ids 0-3 are <pad> <unk> <bos> <eos>
    tok.save(path); load_tokenizer(path)      # plain JSON, stored beside checkpoints

``build_tokenizer(kind, texts, **options)`` picks the class by name (``"char"``, ``"word"``, ``"bpe"``).
"""
from __future__ import annotations

import functools
import json
import os
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable

from .errors import require
from .vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocabulary, save_json

FORMAT_VERSION = 1


def _check_text(tokenizer: "Tokenizer", text) -> None:
    """A tokenizer encodes one text: a list of words would be read as tokens of their own (each unknown)."""
    if not isinstance(text, str):
        raise TypeError(f"{type(tokenizer).__name__}.encode: text must be a str, got {type(text).__name__}; "
                        f"encode each text on its own")


def nfc(text: str) -> str:
    """``text`` in Unicode's composed form NFC (a check first: most text already is)."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


class Tokenizer:
    """The shared part: ``encode``/``decode`` through the vocabulary, and JSON saving.

    Subclasses define ``kind``, ``split``, ``join``, ``fit`` and the options they save (``_options``).
    """

    kind = ""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        _check_text(self, text)
        return self.vocab.encode(self.split(text), bos=bos, eos=eos)

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        return self.join(self.vocab.decode(ids, skip_special=skip_special))

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items() if k != "model")
        return f"{type(self).__name__}({len(self.vocab)} tokens{', ' + opts if opts else ''})"

    def _options(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        return {
            "format": "rnnkit.tokenizer",
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "options": self._options(),
            "vocab": self.vocab.to_dict(),
        }

    def save(self, path: str | os.PathLike) -> None:
        save_json(path, self.to_dict())


class CharTokenizer(Tokenizer):
    """One token per Unicode character (code point) of the text in NFC (``nfc=True``: a letter and its combining
    accent, as some systems write "é", are one character; a tokenizer saved before rnnkit normalised loads with
    ``nfc=False`` and reads text as it did); ``join`` is exact. Characters seen fewer than ``min_freq`` times in
    the training text become ``<unk>``. ``lowercase=True`` folds case first."""

    kind = "char"

    def __init__(self, vocab: Vocabulary, *, lowercase: bool = False, nfc: bool = True):
        super().__init__(vocab)
        self.lowercase = lowercase
        self.nfc = nfc

    @classmethod
    def fit(cls, texts: Iterable[str] | str, *, min_freq: int = 1, lowercase: bool = False,
            nfc: bool = True) -> "CharTokenizer":
        tok = cls(Vocabulary(SPECIALS), lowercase=lowercase, nfc=nfc)
        texts = [texts] if isinstance(texts, str) else texts
        counts: Counter = Counter()
        for t in texts:
            counts.update(tok.split(t))
        return cls(Vocabulary.from_counts(counts, min_freq=min_freq), lowercase=lowercase, nfc=nfc)

    def split(self, text: str) -> list[str]:
        text = text.lower() if self.lowercase else text
        return list(nfc(text) if self.nfc else text)

    def join(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def _options(self) -> dict:
        return {**({"lowercase": True} if self.lowercase else {}), "nfc": self.nfc}


@functools.cache
def _word_punct() -> re.Pattern:
    """A word is a run of letters, digits, underscores and combining marks (Unicode category M: accents,
    Devanagari vowel signs and viramas, Hebrew points, which Python's ``\\w`` leaves out, so "हिन्दी" fell
    apart into six tokens); every other non-space character stands alone. Built on first use (0.1 s)."""
    marks, start, prev = [], None, None
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c))[0] == "M":
            if prev is None or c != prev + 1:
                if start is not None:
                    marks.append((start, prev))
                start = c
            prev = c
    marks.append((start, prev))
    cls = "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in marks)
    return re.compile(rf"[\w{cls}]+|[^\w\s{cls}]")


class WordTokenizer(Tokenizer):
    """Words split on whitespace — and, with ``punctuation=True``, punctuation marks split off as
    their own tokens (``"end."`` → ``["end", "."]``; combining marks stay in their word). The text is
    NFC-normalised first (``nfc=True``; a decomposed "é" is the same word as a composed one; a tokenizer saved before
    rnnkit normalised loads with ``nfc=False``, normalising only with ``punctuation``, as it did). ``lowercase=True``
    folds case first. Words seen
    fewer than ``min_freq`` times (default 1) in the training texts become ``<unk>``; ``max_size``
    caps the vocabulary. ``join`` puts single spaces between tokens (original spacing is lost)."""

    kind = "word"

    def __init__(self, vocab: Vocabulary, *, lowercase: bool = False, punctuation: bool = False, nfc: bool = True):
        super().__init__(vocab)
        self.lowercase = lowercase
        self.punctuation = punctuation
        self.nfc = nfc

    @classmethod
    def fit(
        cls,
        texts: Iterable[str] | str,
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        lowercase: bool = False,
        punctuation: bool = False,
        nfc: bool = True,
    ) -> "WordTokenizer":
        texts = [texts] if isinstance(texts, str) else texts
        probe = cls(Vocabulary(SPECIALS), lowercase=lowercase, punctuation=punctuation, nfc=nfc)
        vocab = Vocabulary.build((probe.split(t) for t in texts), min_freq=min_freq, max_size=max_size)
        return cls(vocab, lowercase=lowercase, punctuation=punctuation, nfc=nfc)

    def split(self, text: str) -> list[str]:
        # NFC first: a decomposed letter ("e" + U+0301) would be another word, or lose its accent as a
        # "punctuation mark"
        text = text.lower() if self.lowercase else text
        text = nfc(text) if self.nfc or self.punctuation else text
        return _word_punct().findall(text) if self.punctuation else text.split()

    def join(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def _options(self) -> dict:
        return {"lowercase": self.lowercase, "punctuation": self.punctuation, "nfc": self.nfc}


def _require_tokenizers():
    return require("tokenizers", "tokenizers", "bpe", "BPE tokenization")


class BPETokenizer(Tokenizer):
    """Byte-level byte-pair encoding (as in GPT-2), trained and run by the ``tokenizers`` package
    (optional extra ``rnnkit[bpe]``). Any text encodes without ``<unk>`` and ``join`` is exact — except
    text that spells ``<pad>``, ``<bos>`` or ``<eos>``, which encodes as ``<unk>`` (as with the other
    tokenizers: text must not end, pad or start a sequence). The special tokens keep ids 0–3; the
    trained model is saved inside the JSON as a string."""

    kind = "bpe"

    def __init__(self, model_json: str):
        tk = _require_tokenizers()
        self._tk = tk.Tokenizer.from_str(model_json)
        vocab = self._tk.get_vocab(with_added_tokens=True)
        tokens = sorted(vocab, key=vocab.__getitem__)
        if [vocab[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError("BPETokenizer: the model's token ids are not 0..n-1 without gaps")
        super().__init__(Vocabulary(tokens))

    @classmethod
    def fit(cls, texts: Iterable[str] | str, *, vocab_size: int = 1000, min_freq: int = 2) -> "BPETokenizer":
        tk = _require_tokenizers()
        texts = [texts] if isinstance(texts, str) else list(texts)
        model = tk.Tokenizer(tk.models.BPE(unk_token=SPECIALS[1]))
        model.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        model.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            special_tokens=list(SPECIALS),  # first, so they get ids 0-3
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        model.train_from_iterator(texts, trainer=trainer)
        return cls(model.to_str())

    def split(self, text: str) -> list[str]:
        return self._tk.encode(text, add_special_tokens=False).tokens

    def join(self, tokens: list[str]) -> str:
        return self._tk.decoder.decode(tokens)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        _check_text(self, text)
        ids = [UNK if i in (PAD, BOS, EOS) else i for i in self._tk.encode(text, add_special_tokens=False).ids]
        return ([self.vocab.bos_id] if bos else []) + ids + ([self.vocab.eos_id] if eos else [])

    def _options(self) -> dict:
        return {"model": self._tk.to_str()}


TOKENIZERS: dict[str, type[Tokenizer]] = {c.kind: c for c in (CharTokenizer, WordTokenizer, BPETokenizer)}


def build_tokenizer(kind: str, texts: Iterable[str] | str, **options) -> Tokenizer:
    """Fit the tokenizer named ``kind`` (``"char"``, ``"word"`` or ``"bpe"``) on ``texts``; ``options``
    go to its ``fit`` (``min_freq``, ``max_size``, ``lowercase``, ``punctuation``, ``nfc``, ``vocab_size``)."""
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {kind!r}, expected one of {sorted(TOKENIZERS)}")
    if kind == "bpe":
        options.pop("nfc", None)  # (BPE's own normaliser decides)
    return TOKENIZERS[kind].fit(texts, **options)


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_dict`'s output."""
    if not isinstance(d, dict) or d.get("format") != "rnnkit.tokenizer":
        raise ValueError("not an rnnkit tokenizer (missing format 'rnnkit.tokenizer')")
    if d.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"tokenizer format version {d['version']} is newer than this rnnkit reads ({FORMAT_VERSION})")
    kind, options = d.get("kind"), dict(d.get("options", {}))
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r} in saved tokenizer, expected one of {sorted(TOKENIZERS)}")
    if kind == "bpe":
        return BPETokenizer(options["model"])
    options.setdefault("nfc", False)  # (saved before tokenizers normalised: they read text as they did then)
    return TOKENIZERS[kind](Vocabulary.from_dict(d["vocab"]), **options)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer saved with :meth:`Tokenizer.save`."""
    return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
