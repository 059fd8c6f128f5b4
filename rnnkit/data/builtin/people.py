"""Data from ``faker``'s per-locale name and place lists (the ``data`` extra): person names labelled
with their language, and sentences with person and location entities in CoNLL BIO form.

Faker is seeded per locale (``seed_instance``), so the same seed and faker version give the same
data; a different faker version may give different names.
"""
from __future__ import annotations

import functools
import random

from ..errors import require

#: Locales and the label each gets. The names are in the Latin script: Japanese ones come from
#: faker's romanised name lists, the others are written that way already (faker's tr_TR data holds a
#: few stray marks, such as U+02DC, kept as they come).
NAME_LOCALES = {
    "en_US": "English", "de_DE": "German", "fr_FR": "French", "it_IT": "Italian", "es_ES": "Spanish",
    "pl_PL": "Polish", "nl_NL": "Dutch", "fi_FI": "Finnish", "tr_TR": "Turkish", "ja_JP": "Japanese",
}
_ROMANISED = {"ja_JP"}  # faker's first_name() there is kanji/kana; *_romanized_name() is Hepburn


def _full_name(f, locale: str) -> str:
    if locale in _ROMANISED:
        return f"{f.first_romanized_name()} {f.last_romanized_name()}"
    return f"{f.first_name()} {f.last_name()}"


@functools.lru_cache(maxsize=None)
def _faker_for(locale: str):
    # Building a Faker loads every provider of the locale (~0.1 s); reseeding an existing one is free
    # and gives the same sequence as a fresh instance.
    f = require("faker", "faker", "data", "the built-in names and entities data").Faker(locale)
    for provider in f.providers:
        cities = getattr(provider, "cities", None)
        if isinstance(cities, list):  # it_IT builds this list from a set: its order (so the city a seed
            provider.cities = sorted(cities)  # draws) followed PYTHONHASHSEED, and so did the data
    return f


def _faker(locale: str, seed: int):
    f = _faker_for(locale)
    f.seed_instance(seed)
    return f


def person_names(per_locale: int = 400, *, locales: dict[str, str] | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """``(name, language)`` pairs: ``per_locale`` distinct "First Last" names from each locale of
    ``locales`` (default :data:`NAME_LOCALES`, 10 languages). Titles are left out (``first_name()``
    and ``last_name()`` rather than ``name()``; romanised for Japanese), and a name that two locales both produce is dropped,
    since its label would be ambiguous. Examples are grouped by locale; shuffle or ``holdout`` them."""
    locales = NAME_LOCALES if locales is None else locales
    by_locale: dict[str, dict[str, None]] = {}
    for k, loc in enumerate(locales):
        f = _faker(loc, seed * 1000 + k)
        names: dict[str, None] = {}
        for _ in range(per_locale * 20):  # a cap, so a locale with few names cannot loop for ever
            if len(names) == per_locale:
                break
            names.setdefault(_full_name(f, loc))
        by_locale[loc] = names
    counts: dict[str, int] = {}
    for names in by_locale.values():
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return [(name, locales[loc]) for loc, names in by_locale.items() for name in names if counts[name] == 1]


# Sentence templates: {P} a person, {L} a location; every other word is tagged O.
_TEMPLATES = [
    "{P} moved to {L} in {Y} .",
    "{P} was born in {L} .",
    "Yesterday {P} met {P} in {L} .",
    "The mayor of {L} thanked {P} for the donation .",
    "{P} and {P} drove from {L} to {L} .",
    "Flights from {L} are delayed again .",
    "{P} said the weather in {L} was fine .",
    "According to {P} , the festival in {L} starts on {D} .",
    "Nobody in {L} had heard of {P} .",
    "On {D} , {P} visited {L} .",
    "{P} wrote a long letter to {P} .",
    "Trains to {L} leave every hour .",
    "The museum in {L} hired {P} in {Y} .",
    "{P} lives between {L} and {L} .",
    "Last {D} the team from {L} lost to {L} .",
    "Ask {P} about the road to {L} .",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_CITY_LOCALES = ["en_US", "de_DE", "fr_FR", "it_IT", "es_ES"]


def _bio(words: list[str], kind: str) -> list[str]:
    return [("B-" if i == 0 else "I-") + kind for i in range(len(words))]


def entities(n: int = 1000, *, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """``(tokens, tags)`` sentences with BIO tags ``B-PER I-PER B-LOC I-LOC O``, from 16 templates.

    People are American faker names in three forms (``First Last``, ``First``, ``Dr./Mrs./Mr. Last``
    with the title tagged O); places are faker cities from five locales (``Port Jennifer``,
    ``Bad Kreuznach``, …). Capitalised non-entities (sentence starts, weekdays, titles) keep a
    capital letter from being enough. Tagging everything O is the baseline.
    """
    rng = random.Random(seed)
    people = _faker("en_US", seed)
    cities = [_faker(loc, seed + k) for k, loc in enumerate(_CITY_LOCALES)]
    out = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for word in rng.choice(_TEMPLATES).split():
            if word == "{P}":
                form = rng.random()
                if form < 0.5:
                    span = f"{people.first_name()} {people.last_name()}".split()
                elif form < 0.75:
                    span = [people.first_name()]
                else:
                    tokens.append(rng.choice(["Dr.", "Mrs.", "Mr."]))
                    tags.append("O")
                    span = people.last_name().split()
                tokens += span
                tags += _bio(span, "PER")
            elif word == "{L}":
                span = rng.choice(cities).city().split()
                tokens += span
                tags += _bio(span, "LOC")
            else:
                tokens.append({"{Y}": str(rng.randint(1950, 2024)), "{D}": rng.choice(_DAYS)}.get(word, word))
                tags.append("O")
        out.append((tokens, tags))
    return out
