"""Ready models, one input/output configuration per module, each built from a typed config dataclass.

``MODEL_TYPES`` maps the model-type name a checkpoint stores (next to ``dataclasses.asdict(config)``
as JSON) to the class whose ``from_config`` rebuilds it.
"""
from .captioner import ImageCaptioner, ImageCaptionerConfig, VectorToSequence, VectorToSequenceConfig
from .classifier import SequenceClassifier, SequenceClassifierConfig
from .crf import LinearChainCRF
from .feedforward import FeedForwardBaseline, FeedForwardBaselineConfig
from .forecaster import Forecaster, ForecasterConfig
from .language_model import LanguageModel, LanguageModelConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tagger import SequenceTagger, SequenceTaggerConfig

MODEL_TYPES: dict[str, type] = {
    "captioner": ImageCaptioner,
    "classifier": SequenceClassifier,
    "feedforward": FeedForwardBaseline,
    "forecaster": Forecaster,
    "language_model": LanguageModel,
    "seq2seq": Seq2Seq,
    "tagger": SequenceTagger,
    "vector_to_sequence": VectorToSequence,
}

__all__ = ["MODEL_TYPES", "LanguageModel", "LanguageModelConfig", "Seq2Seq", "Seq2SeqConfig",
           "LinearChainCRF", "SequenceClassifier", "SequenceClassifierConfig", "SequenceTagger",
           "SequenceTaggerConfig", "Forecaster", "ForecasterConfig",
           "FeedForwardBaseline", "FeedForwardBaselineConfig", "ImageCaptioner",
           "ImageCaptionerConfig", "VectorToSequence", "VectorToSequenceConfig"]
