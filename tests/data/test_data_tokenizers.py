"""Vocabulary and tokenizers: fixed special ids, deterministic ids, exact round trips, JSON save/load."""
from __future__ import annotations

import json
import sys

import pytest

from rnnkit.data import (
    BOS, EOS, PAD, SPECIALS, UNK, BPETokenizer, CharTokenizer, MissingExtraError, Vocabulary, WordTokenizer,
    build_tokenizer, load_tokenizer, tokenizer_from_dict,
)

TEXTS = ["The cat sat on the mat.", "the dog sat, then ran!", "Ünïcode — and tabs\tand\nnewlines 日本"]


def test_special_ids_are_fixed():
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    v = Vocabulary.build([["b", "a", "b"]])
    assert v.tokens[:4] == list(SPECIALS) and (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)
    assert v.tokens[4:] == ["b", "a"]  # most frequent first


def test_vocabulary_min_freq_max_size_and_tie_order():
    counts = {"x": 3, "b": 2, "a": 2, "rare": 1}
    assert Vocabulary.from_counts(counts, min_freq=2).tokens[4:] == ["x", "a", "b"]  # ties by text
    assert Vocabulary.from_counts(counts, max_size=2).tokens[4:] == ["x", "a"]


def test_vocabulary_encode_decode():
    v = Vocabulary.build([["a", "b"]])
    ids = v.encode(["a", "zzz", "b"], bos=True, eos=True)
    assert ids == [BOS, 4, UNK, 5, EOS]
    assert v.decode(ids) == ["a", "<unk>", "b"]
    assert v.decode([4, EOS, 5]) == ["a"]  # stops at eos
    assert v.decode([4, PAD, 5], skip_special=False) == ["a", "<pad>", "b"]
    with pytest.raises(ValueError, match="out of range"):
        v.decode([99])


@pytest.mark.parametrize("bad", [["<unk>", "<pad>", "<bos>", "<eos>"], list(SPECIALS) + ["a", "a"]])
def test_vocabulary_rejects_bad_token_lists(bad):
    with pytest.raises(ValueError):
        Vocabulary(bad)


def test_vocabulary_json_round_trip(tmp_path):
    v = Vocabulary.build([list("héllo wörld")])
    v.save(tmp_path / "vocab.json")
    d = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert d["tokens"][:4] == list(SPECIALS)
    assert Vocabulary.load(tmp_path / "vocab.json") == v
    with pytest.raises(ValueError, match="newer"):
        Vocabulary.from_dict({**d, "version": 99})


def test_char_tokenizer_lowercase_folds_case_and_round_trips():
    tok = CharTokenizer.fit(["Dubois", "SMITH"], lowercase=True)
    assert "D" not in tok.vocab.tokens and tok.encode("Dd") == tok.encode("dd") and UNK not in tok.encode("Dubois")
    back = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert back.lowercase and back.encode("SmItH") == tok.encode("smith")
    assert CharTokenizer.fit("ab").to_dict()["options"] == {"nfc": True}


def test_char_tokenizer_is_exact_and_maps_unseen_to_unk():
    tok = CharTokenizer.fit(TEXTS)
    for t in TEXTS:
        assert tok.decode(tok.encode(t)) == t
    assert tok.encode("€") == [UNK]
    assert CharTokenizer.fit("aab", min_freq=2).encode("ab") == [4, UNK]


def test_word_tokenizer_min_freq_lowercase_punctuation():
    tok = WordTokenizer.fit(TEXTS, min_freq=2, lowercase=True, punctuation=True)
    assert set(tok.vocab.tokens[4:]) == {"the", "sat", "and"}
    assert tok.split("The end.") == ["the", "end", "."]
    assert tok.decode(tok.encode("the cat sat")) == "the <unk> sat"
    plain = WordTokenizer.fit(TEXTS)
    assert plain.split("sat, then") == ["sat,", "then"]


@pytest.mark.parametrize("kind", ["char", "word"])
def test_tokenizer_save_load(tmp_path, kind):
    tok = build_tokenizer(kind, TEXTS, min_freq=1)
    tok.save(tmp_path / "tok.json")
    back = load_tokenizer(tmp_path / "tok.json")
    assert type(back) is type(tok) and back.vocab == tok.vocab
    assert [back.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]


@pytest.mark.parametrize("kind", ["char", "word"])
def test_a_tokenizer_encodes_one_text_not_a_list_of_words(kind):
    """A list of words was read as tokens of their own: every one unknown, without a word."""
    tok = build_tokenizer(kind, "hello world")
    with pytest.raises(TypeError, match=r"Tokenizer.encode: text must be a str, got list; encode each text"):
        tok.encode(["hello", "world"])


def test_unknown_tokenizer_kind():
    with pytest.raises(ValueError, match="expected one of"):
        build_tokenizer("sentencepiece", TEXTS)


def test_bpe_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    with pytest.raises(MissingExtraError, match=r"pip install 'rnnkit\[bpe\]'"):
        BPETokenizer.fit(TEXTS)


def test_bpe_round_trip_special_ids_and_save(tmp_path):
    pytest.importorskip("tokenizers")
    corpus = [t * 20 for t in TEXTS]
    tok = BPETokenizer.fit(corpus, vocab_size=320)
    assert tok.vocab.tokens[:4] == list(SPECIALS)
    for t in TEXTS + ["never seen: ŝ ∑ 🙂"]:
        ids = tok.encode(t, bos=True, eos=True)
        assert ids[0] == BOS and ids[-1] == EOS and UNK not in ids  # byte level: nothing is unknown
        assert tok.decode(ids) == t
    assert len(tok.encode("The cat sat on the mat.")) < len("The cat sat on the mat.")  # merges happened
    tok.save(tmp_path / "bpe.json")
    back = load_tokenizer(tmp_path / "bpe.json")
    assert back.vocab == tok.vocab and back.encode(TEXTS[2]) == tok.encode(TEXTS[2])


def test_text_that_spells_a_control_token_is_unknown():
    """Literal "<eos>" in text must not end a decoded sequence, nor "<pad>" vanish as padding."""
    from rnnkit.data import UNK, WordTokenizer

    w = WordTokenizer.fit(["a <eos> b <pad> c <unk>"])
    assert w.encode("a <eos> b <pad> c <unk>")[1::2] == [UNK, UNK, UNK]
    assert w.decode(w.encode("a <eos> b")) == "a <unk> b"
    pytest.importorskip("tokenizers")
    from rnnkit.data import BPETokenizer

    b = BPETokenizer.fit(["some text to learn from <eos> and more"] * 20, vocab_size=300)
    ids = b.encode("a <eos> b x<pad>y")
    assert not set(ids) & {0, 2, 3} and UNK in ids
    assert b.decode(ids).startswith("a ") and b.decode(ids).endswith("y")


def test_punctuation_split_keeps_accents_on_their_letters():
    from rnnkit.data import WordTokenizer

    w = WordTokenizer.fit([""], punctuation=True)
    assert w.split("Cafe\u0301, ok.") == ["Café", ",", "ok", "."]  # NFD input, one word token
    # marks with no precomposed letter (NFC leaves them): Devanagari vowel signs and virama, Hebrew points,
    # a dot above after lowercasing İ; Python's \w leaves them out, and the words fell apart at them
    assert w.split("हिन्दी, עִבְרִית!") == ["हिन्दी", ",", "עִבְרִית", "!"]
    assert w.split("q\u0301.") == ["q\u0301", "."]
    assert WordTokenizer.fit([""], punctuation=True, lowercase=True).split("İstanbul") == ["i\u0307stanbul"]


def test_save_is_atomic_and_bad_input_is_named(tmp_path):
    """A tokenizer that cannot be encoded (a lone surrogate, possible in a Python string) left the old file
    truncated to nothing; a 2-D decode and a non-integer format version failed in torch's/Python's words."""
    import torch

    from rnnkit.data import CharTokenizer, Vocabulary

    path = tmp_path / "tok.json"
    CharTokenizer.fit("abc").save(path)
    before = path.read_bytes()
    with pytest.raises(UnicodeEncodeError):
        CharTokenizer.fit("ab\udcff").save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["tok.json"]
    vocab = Vocabulary.build([["a", "b"]])
    with pytest.raises(ValueError, match=r"ids must be one sequence \(1-D\), got shape \(2, 2\)"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="format version must be an integer, got '2'"):
        Vocabulary.from_dict({**vocab.to_dict(), "version": "2"})


def test_decomposed_and_composed_text_are_the_same_tokens():
    """A model fitted on "café" saw "cafe" + U+0301 (NFD, as macOS and some editors write it) as unknown."""
    from rnnkit.data import CharTokenizer, WordTokenizer

    nfc, nfd = "caf\u00e9 na\u00efve", "cafe\u0301 nai\u0308ve"
    for tok in (CharTokenizer.fit(nfc), WordTokenizer.fit(nfc), WordTokenizer.fit(nfd, punctuation=True)):
        assert tok.encode(nfd) == tok.encode(nfc) and tok.vocab.unk_id not in tok.encode(nfd)
    # A tokenizer saved before rnnkit normalised reads text as it did: an old model trained on NFD text keeps
    # its decomposed characters (normalising would make its "é" unknown).
    from collections import Counter

    made_before = (CharTokenizer(Vocabulary.from_counts(Counter(nfd)), nfc=False),
                   WordTokenizer(Vocabulary.build([nfd.split()]), nfc=False))
    for tok in made_before:
        old = tok.to_dict()
        old["options"].pop("nfc")  # (as saved then)
        back = tokenizer_from_dict(old)
        assert back.nfc is False and back.vocab.unk_id not in back.encode(nfd)
