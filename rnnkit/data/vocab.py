"""A vocabulary: the two-way map between tokens (strings) and ids (ints), with four special tokens.

The special tokens have fixed ids in every vocabulary rnnkit builds, so models and batching code
can rely on them without asking the vocabulary:

====  =========  ===========================================================
 id   token      meaning
====  =========  ===========================================================
 0    ``<pad>``  padding; ``pad_batch`` fills with it and losses ignore it
 1    ``<unk>``  any token not in the vocabulary
 2    ``<bos>``  beginning of sequence (decoder start)
 3    ``<eos>``  end of sequence (decoder stop)
====  =========  ===========================================================

Ordinary tokens follow from id 4, most frequent first (ties broken by the token's text, so the same
counts always give the same ids). A vocabulary saves to and loads from plain JSON (it is stored
beside checkpoints; nothing is pickled).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_CONTROL = frozenset({"<pad>", "<bos>", "<eos>"})  # specials that text must not produce
FORMAT_VERSION = 1


class Vocabulary:
    """Tokens ↔ ids. ``tokens[i]`` is the token of id ``i``; ids 0–3 are ``SPECIALS``.

    Build one with :meth:`from_counts` / :meth:`build`, or from an explicit token list (which must
    start with the four specials, in order).
    """

    pad_id, unk_id, bos_id, eos_id = PAD, UNK, BOS, EOS

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"Vocabulary: the first four tokens must be {list(SPECIALS)}, got {tokens[:4]}")
        index: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if not isinstance(t, str):
                raise TypeError(f"Vocabulary: tokens must be str, got {type(t).__name__} at id {i}")
            if t in index:
                raise ValueError(f"Vocabulary: token {t!r} appears twice (ids {index[t]} and {i})")
            index[t] = i
        self.tokens = tokens
        self._index = index

    @classmethod
    def from_counts(cls, counts: Counter | dict, *, min_freq: int = 1, max_size: int | None = None) -> "Vocabulary":
        """Keep tokens seen at least ``min_freq`` times, the ``max_size`` most frequent at most
        (specials not counted); order: frequency descending, then the token's text."""
        if min_freq < 1:
            raise ValueError(f"Vocabulary: min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"Vocabulary: max_size must be >= 0 or None, got {max_size}")
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size]
        return cls(SPECIALS + tuple(kept))

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], *, min_freq: int = 1, max_size: int | None = None) -> "Vocabulary":
        """Count the tokens of every sequence, then :meth:`from_counts`. A sequence is a list of tokens — a
        ``str`` is taken as its characters (a character vocabulary): split words first for a word one."""
        counts: Counter = Counter()
        for seq in sequences:
            counts.update(seq)
        return cls.from_counts(counts, min_freq=min_freq, max_size=max_size)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {self.tokens[4:9]}{'…' if len(self) > 9 else ''})"

    def id(self, token: str) -> int:
        """The id of ``token``, or ``UNK`` (1) if it is not in the vocabulary."""
        return self._index.get(token, UNK)

    def encode(self, tokens: Iterable[str], *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``tokens`` (unknown → 1), with ``<bos>``/``<eos>`` added when asked (a ``str`` is taken as
        its characters, as in a character vocabulary; a tokenizer's ``encode`` splits text). Text that spells a
        control token — ``<pad>``, ``<bos>``, ``<eos>`` — is unknown too: it must not end, pad or start a
        sequence (a literal ``<unk>``, as in corpora that mark rare words so, stays ``<unk>``)."""
        get = self._index.get
        ids = [UNK if t in _CONTROL else get(t, UNK) for t in tokens]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Iterable[int], *, skip_special: bool = True, stop_at_eos: bool = True) -> list[str]:
        """Tokens of ``ids``. By default padding/bos/eos are dropped, ``<unk>`` is kept, and decoding
        stops at the first ``<eos>`` (so a generated sequence's tail after it is ignored)."""
        if isinstance(ids, torch.Tensor) and ids.dim() > 1:
            raise ValueError(f"Vocabulary.decode: ids must be one sequence (1-D), got shape {tuple(ids.shape)}; "
                             f"decode each row")
        out = []
        n = len(self.tokens)
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"Vocabulary.decode: id {i} is out of range for a vocabulary of {n} tokens")
            if i == EOS and stop_at_eos:
                break
            if skip_special and i in (PAD, BOS, EOS):
                continue
            out.append(self.tokens[i])
        return out

    # --- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": "rnnkit.vocabulary", "version": FORMAT_VERSION, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        if not isinstance(d, dict) or d.get("format") != "rnnkit.vocabulary":
            raise ValueError("Vocabulary.from_dict: not an rnnkit vocabulary (missing format 'rnnkit.vocabulary')")
        version = d.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"Vocabulary.from_dict: format version must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"Vocabulary.from_dict: format version {d['version']} is newer than this rnnkit reads ({FORMAT_VERSION})"
            )
        return cls(d["tokens"])

    def save(self, path: str | os.PathLike) -> None:
        save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def save_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as JSON at ``path``, atomically: encoded first (a failure leaves any old file as it was),
    then written to a temporary file beside it and moved over it."""
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8")  # (a lone surrogate fails here, before any write)
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
