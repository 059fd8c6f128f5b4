"""Text that needs no download: the Python documentation shipped with the interpreter, and a small
generated sentiment set in which word order matters."""
from __future__ import annotations

import random


def python_docs_text() -> str:
    """The text of the Python documentation's topics (``pydoc_data.topics``, standard library — what
    ``help('assert')`` prints): every topic in sorted order, separated by a blank line. About 465,000
    characters and ~100 distinct characters on CPython 3.11; the exact text follows the Python
    version."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"


def python_docs(valid_chars: int = 50_000, train_chars: int | None = None) -> dict[str, str]:
    """``{"train": str, "valid": str}`` from :func:`python_docs_text`: the last ``valid_chars``
    characters are validation, and training is the text before them — all of it, or its first
    ``train_chars`` characters (a smaller corpus for a quick run; validation stays the same)."""
    text = python_docs_text()
    if not 0 < valid_chars < len(text):
        raise ValueError(f"python_docs: valid_chars must be between 1 and {len(text) - 1}, got {valid_chars}")
    train, valid = text[:-valid_chars], text[-valid_chars:]
    if train_chars is not None:
        if train_chars < 1:
            raise ValueError(f"python_docs: train_chars must be >= 1, got {train_chars}")
        train = train[:train_chars]
    return {"train": train, "valid": valid}


_SUBJECTS = ["the film", "the food", "this phone", "the service", "our hotel", "the book", "the concert",
             "the coffee", "the game", "the room", "the staff", "the music"]
_VERBS = ["was", "is", "seemed", "felt", "looked", "sounded"]
_ADVERBS = ["", "", "really", "very", "quite", "truly", "rather"]
_POSITIVE = ["good", "great", "excellent", "wonderful", "pleasant", "delightful", "superb", "lovely", "fun", "fine"]
_NEGATIVE = ["bad", "awful", "terrible", "boring", "poor", "dreadful", "bland", "horrible", "dull", "rude"]
_NEGATIONS = ["not", "never", "hardly"]


def _clause(rng: random.Random) -> tuple[str, bool]:
    """One clause and whether it is positive: the adjective's polarity, flipped by a negation."""
    positive = rng.random() < 0.5
    negated = rng.random() < 0.4
    words = [rng.choice(_SUBJECTS), rng.choice(_VERBS)]
    if negated:
        words.append(rng.choice(_NEGATIONS))
    words += [rng.choice(_ADVERBS), rng.choice(_POSITIVE if positive else _NEGATIVE)]
    return " ".join(w for w in words if w), positive != negated


def sentiment(n: int = 2000, *, seed: int = 0) -> list[tuple[str, str]]:
    """``(sentence, "positive" | "negative")`` pairs from templates, distinct sentences.

    A clause is ``SUBJECT VERB [not|never|hardly] [ADVERB] ADJECTIVE``; a negation flips the
    adjective's polarity. Half the sentences join two clauses with ``but`` and take the polarity of
    the second. So the label depends on word order and on negation scope — a bag of words cannot get
    all of it, a recurrent model can. Classes are balanced to within sampling noise.
    """
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    while len(seen) < n:
        text, positive = _clause(rng)
        if rng.random() < 0.5:
            second, positive = _clause(rng)
            text = f"{text} but {second}"
        seen.setdefault(text, "positive" if positive else "negative")
    return list(seen.items())
