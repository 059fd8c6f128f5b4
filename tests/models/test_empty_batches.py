"""A batch of no rows is named by the model (a mean loss over it was NaN, and generation failed in the
decoder's internals), and generation's bad arguments are named as the model's ``generate``'s."""
from __future__ import annotations

import pytest
import torch

from rnnkit.models import (Forecaster, FeedForwardBaseline, ImageCaptioner, LanguageModel, Seq2Seq, SequenceClassifier,
                           SequenceTagger, VectorToSequence)

L = torch.long
CASES = {
    "lm.loss": (lambda: LanguageModel(vocab_size=9, embed_size=4, hidden_size=4).loss(torch.zeros(0, 5, dtype=L)),
                "LanguageModel.loss: tokens is an empty batch (shape (0, 5))"),
    "lm.generate": (lambda: LanguageModel(vocab_size=9, embed_size=4, hidden_size=4).generate(
        torch.zeros(0, 3, dtype=L), 4), "LanguageModel.generate: prompt is an empty batch"),
    "seq2seq.loss": (lambda: Seq2Seq(src_vocab_size=9, tgt_vocab_size=8, embed_size=4, hidden_size=4).loss(
        torch.zeros(0, 4, dtype=L), torch.zeros(0, 3, dtype=L)), "Seq2Seq.loss: src is an empty batch"),
    "seq2seq.generate": (lambda: Seq2Seq(src_vocab_size=9, tgt_vocab_size=8, embed_size=4, hidden_size=4).generate(
        torch.zeros(0, 4, dtype=L)), "Seq2Seq.generate: src is an empty batch"),
    "classifier.loss": (lambda: SequenceClassifier(vocab_size=9, num_classes=3, embed_size=4, hidden_size=4).loss(
        torch.zeros(0, 4, dtype=L), torch.zeros(0, dtype=L)), "SequenceClassifier.loss: inputs is an empty batch"),
    "feedforward.loss": (lambda: FeedForwardBaseline(vocab_size=9, num_classes=3, embed_size=4).loss(
        torch.zeros(0, 4, dtype=L), torch.zeros(0, dtype=L)), "FeedForwardBaseline.loss: inputs is an empty batch"),
    "tagger.loss": (lambda: SequenceTagger(vocab_size=9, num_tags=3, embed_size=4, hidden_size=4, decoder="crf").loss(
        torch.zeros(0, 4, dtype=L), torch.zeros(0, 4, dtype=L)), "SequenceTagger.loss: tokens is an empty batch"),
    "forecaster.loss": (lambda: Forecaster(hidden_size=4).loss(torch.zeros(0, 6, 1)),
                        "Forecaster.loss: series is an empty batch"),
    "vec2seq.loss": (lambda: VectorToSequence(cond_size=3, vocab_size=6, hidden_size=4).loss(
        torch.zeros(0, 3), torch.zeros(0, 2, dtype=L)), "VectorToSequence.loss: cond is an empty batch"),
    "vec2seq.generate": (lambda: VectorToSequence(cond_size=3, vocab_size=6, hidden_size=4).generate(torch.zeros(0, 3)),
                         "VectorToSequence.generate: cond is an empty batch"),
    "captioner.loss": (lambda: ImageCaptioner(vocab_size=9, hidden_size=4).loss(
        torch.zeros(0, 1, 8, 24), torch.zeros(0, 2, dtype=L)), "ImageCaptioner.loss: images is an empty batch"),
    "captioner.generate": (lambda: ImageCaptioner(vocab_size=9, hidden_size=4).generate(torch.zeros(0, 1, 8, 24)),
                           "ImageCaptioner.generate: images is an empty batch"),
}


@pytest.mark.parametrize("case", CASES)
def test_an_empty_batch_is_named(case):
    fn, message = CASES[case]
    with pytest.raises(ValueError, match=f"^{message}".replace("(", r"\(").replace(")", r"\)")):
        fn()


@pytest.mark.parametrize("rows", [1, 2], ids=["one_row", "batch"])  # (one row on the CPU: the numpy path)
def test_generation_arguments_are_named_as_the_models(rows):
    torch.manual_seed(0)
    lm = LanguageModel(vocab_size=9, embed_size=4, hidden_size=4)
    prompt = torch.ones(rows, 2, dtype=L)
    for kw, fragment in (({"method": "bogus"}, "method must be one of"),
                         ({"method": "sample", "temperature": 0}, "temperature must be a finite number > 0"),
                         ({"method": "beam", "beam_width": 0}, "beam_width must be >= 1")):
        with pytest.raises(ValueError, match=f"^LanguageModel.generate: {fragment}"):
            lm.generate(prompt, 3, **kw)
    captioner = ImageCaptioner(vocab_size=9, hidden_size=4)
    with pytest.raises(ValueError, match="^ImageCaptioner.generate: max_length must be >= 1"):
        captioner.generate(torch.zeros(rows, 1, 8, 24), max_length=0)
    s2s = Seq2Seq(src_vocab_size=9, tgt_vocab_size=8, embed_size=4, hidden_size=4)
    with pytest.raises(ValueError, match="^Seq2Seq.generate: top_p must be"):
        s2s.generate(torch.ones(rows, 3, dtype=L), method="sample", top_p=2.0)


@pytest.mark.parametrize("case", ["lm", "seq2seq", "vec2seq", "captioner"])
def test_a_batch_of_padding_alone_is_named(case):
    """Targets that are all padding have no mean loss: it was NaN, and an optimiser step made the weights NaN."""
    torch.manual_seed(0)
    owner, call = {
        "lm": ("LanguageModel.loss: tokens", lambda: LanguageModel(vocab_size=6, embed_size=4, hidden_size=4,
                                                                    padding_idx=0).loss(torch.tensor([[1, 0, 0]]))),
        "seq2seq": ("Seq2Seq.loss: tgt", lambda: Seq2Seq(src_vocab_size=6, tgt_vocab_size=6, embed_size=4,
                                                         hidden_size=4).loss(torch.tensor([[1, 4]]),
                                                                             torch.zeros(1, 2, dtype=L))),
        "vec2seq": ("VectorToSequence.loss: targets", lambda: VectorToSequence(cond_size=3, vocab_size=6, hidden_size=4)
                    .loss(torch.ones(2, 3), torch.zeros(2, 2, dtype=L))),
        "captioner": ("ImageCaptioner.loss: targets", lambda: ImageCaptioner(vocab_size=9, hidden_size=4).loss(
            torch.zeros(1, 1, 8, 24), torch.zeros(1, 3, dtype=L))),
    }[case]
    with pytest.raises(ValueError, match=f"^{owner} has no target to score: every one is padding"):
        call()
