"""Numbers as words (``num2words``) and pictures of digits with spoken captions (scikit-learn's 8×8
handwritten digits) — both from the ``data`` extra."""
from __future__ import annotations

import random

import torch

from ..captions import Captions
from ..errors import require

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def number_words(n: int = 3000, *, low: int = 0, high: int = 9999, lang: str = "en", seed: int = 0) -> list[tuple[str, str]]:
    """``(digits, words)`` pairs for translating numbers to words: ``("3 4 2", "three hundred and
    forty-two")``. ``n`` distinct integers drawn from ``[low, high]`` without replacement (seeded);
    digits are space-separated so word and character tokenizers both see one digit per token. The
    words are ``num2words(number, lang=lang)``."""
    num2words = require("num2words", "num2words", "data", "the built-in number_words data").num2words
    if high < low or n > high - low + 1:
        raise ValueError(f"number_words: cannot draw {n} distinct numbers from [{low}, {high}]")
    numbers = random.Random(seed).sample(range(low, high + 1), n)
    return [(" ".join(str(x)), num2words(x, lang=lang)) for x in numbers]


def digit_captions(
    n: int = 2000, *, digits: int = 3, part: str = "train", valid_fraction: float = 0.2, seed: int = 0
) -> Captions:
    """Strips of ``digits`` handwritten digits side by side, captioned with their names:
    images (n, 1, 8, 8 * digits) float32 in [0, 1], captions like ``"three one four"``.

    The 1,797 scans of ``sklearn.datasets.load_digits`` (16 grey levels, scaled to [0, 1]) are split
    once, by a fixed permutation, into ``valid_fraction`` for validation and the rest for training;
    ``part="train"`` / ``"valid"`` draws strips only from that part, so validation strips show scans
    the model never saw. The digits of a strip are chosen uniformly and independently (seeded).
    """
    if part not in ("train", "valid"):
        raise ValueError(f"digit_captions: part must be 'train' or 'valid', got {part!r}")
    datasets = require("sklearn.datasets", "scikit-learn", "data", "the built-in digit_captions data")
    bunch = datasets.load_digits()
    scans = torch.tensor(bunch.images, dtype=torch.float32) / 16.0  # (1797, 8, 8)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(scans), generator=torch.Generator().manual_seed(1797))  # fixed split, not per seed
    cut = round(len(scans) * (1 - valid_fraction))
    pool = order[:cut] if part == "train" else order[cut:]
    g = torch.Generator().manual_seed(seed * 2 + (part == "valid"))
    pick = pool[torch.randint(len(pool), (n, digits), generator=g)]  # (n, digits) scan indices
    images = scans[pick].permute(0, 2, 1, 3).reshape(n, 1, 8, 8 * digits)  # (n, 1, 8, 8*digits), left to right
    captions = [" ".join(DIGIT_WORDS[int(d)] for d in row) for row in labels[pick]]
    return Captions(images, captions)
