"""rnnkit.data — from files (or built-in data) to padded id tensors.

Shapes: B batch, T longest sequence in a batch, N examples / tokens, C channels or columns.
Every problem with a user's file raises ``DataError`` (a ``ValueError``): one line,
``PATH:LINE: problem (expected …, got …)``.

Vocabulary and tokenizers (``vocab.py``, ``tokenizer.py``)
    ``Vocabulary(tokens)``: ids 0 ``<pad>``, 1 ``<unk>``, 2 ``<bos>``, 3 ``<eos>`` (constants ``PAD UNK
    BOS EOS``), ordinary tokens from 4. ``.build(seqs, min_freq=1, max_size=None)``,
    ``.encode(tokens, bos=False, eos=False) -> list[int]``, ``.decode(ids) -> list[str]``,
    ``.save(path)`` / ``Vocabulary.load(path)`` (JSON).
    ``CharTokenizer``, ``WordTokenizer`` (``min_freq``, ``lowercase``, ``punctuation``),
    ``BPETokenizer`` (``vocab_size``; needs the ``bpe`` extra, else ``MissingExtraError``), built with
    ``build_tokenizer(kind, texts, **options)``; each has ``.encode(text) -> list[int]``,
    ``.decode(ids) -> str``, ``.split``/``.join``, ``.vocab``, ``.save(path)``; ``load_tokenizer(path)``,
    ``tokenizer_from_dict(d)`` rebuild one from JSON.

Readers (``readers.py``, ``captions.py``) — and writers (``writers.py``) that are their inverses
    ``read_text(path) -> str``                                   language model
    ``read_labelled(path) -> list[(text, label)]``                classification, CSV/TSV
    ``read_conll(path) -> list[(tokens, tags)]``                  tagging
    ``read_parallel(src, tgt=None) -> list[(source, target)]``    translation, two files or one TSV
    ``read_series(path, columns=None) -> Series(values (T, C) float32, columns)``   forecasting
    ``read_captions(path) -> Captions(images (N, C, H, W) float32 in [0, 1], captions)``  .npz or folder
    ``write_text``, ``write_labelled``, ``write_conll``, ``write_parallel``, ``write_series``, ``write_captions``
    ``holdout(data, valid_fraction=0.1, seed=0) -> (train, valid)``: seeded split of any of the above
    (text and series: the tail).

Batching (``batching.py``)
    ``pad_batch(seqs, pad_id=0) -> (ids (B, T) int64, lengths (B,) int64)``
    ``BucketBatcher(lengths, batch_size, shuffle=True, seed=0, bucket=32)``: iterates lists of
    example indices grouped by length; ``.set_epoch(e)``
    ``StreamBatches(ids (N,), batch_size, bptt)``: iterates ``(x (B, t), y (B, t))``, t <= bptt; row b
    of one chunk continues row b of the previous, so hidden state carries over (truncated BPTT)
    ``make_windows(values (T, C), window, horizon=1) -> (inputs (N, window, C), targets (N, horizon, C))``

Built-in data, no download (``builtin/``)
    ``BUILTIN_DATASETS``: name -> ``BuiltinDataset(name, task, description, source, ...)``
    ``load_builtin(name, seed=0, **options) -> {"train": X, "valid": X}``, X the same structure the
    task's reader returns (so files and built-ins take one code path); ``adding`` (task
    ``regression``) gives ``(inputs (N, T, 2), targets (N,))`` instead;
    ``write_builtin(name, directory, seed=0, **options) -> {"train": Path, "valid": Path}`` in the
    task's file format. Sets: pydoc (lm); names, sentiment (classify); entities, copy (tag);
    reverse, numbers (translate); sunspots, co2, sine (forecast); digits (caption); adding.
"""
from .builtin import BUILTIN_DATASETS, BuiltinDataset, load_builtin, write_builtin
from .batching import BucketBatcher, StreamBatches, make_windows, pad_batch
from .captions import Captions, read_captions, write_captions
from .errors import DataError, MissingExtraError
from .readers import Series, read_conll, read_labelled, read_parallel, read_series, read_text
from .split import holdout
from .tokenizer import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)
from .vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocabulary
from .writers import write_conll, write_labelled, write_parallel, write_series, write_text

__all__ = [
    "BOS", "EOS", "PAD", "SPECIALS", "UNK", "Vocabulary",
    "Tokenizer", "CharTokenizer", "WordTokenizer", "BPETokenizer", "build_tokenizer", "load_tokenizer",
    "tokenizer_from_dict",
    "DataError", "MissingExtraError",
    "read_text", "read_labelled", "read_conll", "read_parallel", "read_series", "read_captions", "Series", "Captions",
    "write_text", "write_labelled", "write_conll", "write_parallel", "write_series", "write_captions", "holdout",
    "pad_batch", "BucketBatcher", "StreamBatches", "make_windows",
    "BUILTIN_DATASETS", "BuiltinDataset", "load_builtin", "write_builtin",
]
