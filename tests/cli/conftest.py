"""Helpers for the command-line tests: run ``rnnkit`` in-process and small data files per task."""
from __future__ import annotations

import random

import pytest

from rnnkit.cli import main


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)``."""

    def run(*args: str):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def lm_text(n: int = 6000, seed: int = 0) -> str:
    """Words from a tiny grammar: predictable within a word, so a char LM beats unigram fast."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "mat", "and", "dog", "ran", "to", "its", "home"]
    out = []
    while sum(map(len, out)) < n:
        out.append(rng.choice(words))
    return " ".join(out) + "\n"


def conll_sentences(n: int = 300, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """'mr NAME [NAME]' is a person, 'in CITY' a location, everything else O."""
    rng = random.Random(seed)
    names, cities = ["smith", "jones", "brown", "lee", "khan"], ["paris", "rome", "oslo", "lima"]
    filler = ["we", "met", "today", "saw", "with", "a", "friend", "later", "there"]
    sents = []
    for _ in range(n):
        toks, tags = [], []
        for _ in range(rng.randint(2, 5)):
            r = rng.random()
            if r < 0.25:
                toks += ["mr", rng.choice(names)]
                tags += ["O", "B-PER"]
                if rng.random() < 0.5:
                    toks.append(rng.choice(names))
                    tags.append("I-PER")
            elif r < 0.45:
                toks += ["in", rng.choice(cities)]
                tags += ["O", "B-LOC"]
            else:
                toks.append(rng.choice(filler))
                tags.append("O")
        sents.append((toks, tags))
    return sents


@pytest.fixture
def files(tmp_path):
    """Small data files for every task, written once per test."""
    from rnnkit.data import write_conll, write_labelled

    d = tmp_path / "data"
    d.mkdir()
    (d / "train.txt").write_text(lm_text())
    write_conll(d / "train.conll", conll_sentences())
    rng = random.Random(1)
    rows = []
    for _ in range(400):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(["good", "great", "fine"] if label == "pos" else ["bad", "awful", "poor"])]
        words += [rng.choice(["the", "film", "was", "food", "really"]) for _ in range(rng.randint(1, 4))]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    # skewed so that majority-class is a real baseline
    rows += [(f"{w} ok", "neg") for w in ("awful", "poor", "bad") for _ in range(40)]
    write_labelled(d / "train.csv", rows)
    return d
