"""Ready models, one input/output configuration per module, each built from a typed config dataclass.

``MODEL_TYPES`` maps the model-type name a checkpoint stores (next to ``dataclasses.asdict(config)``
as JSON) to the class whose ``from_config`` rebuilds it.
"""
from .classifier import SequenceClassifier, SequenceClassifierConfig
from .crf import LinearChainCRF
from .forecaster import Forecaster, ForecasterConfig
from .language_model import LanguageModel, LanguageModelConfig
from .tagger import SequenceTagger, SequenceTaggerConfig

MODEL_TYPES: dict[str, type] = {
    "classifier": SequenceClassifier,
    "forecaster": Forecaster,
    "language_model": LanguageModel,
    "tagger": SequenceTagger,
}

__all__ = ["MODEL_TYPES", "LanguageModel", "LanguageModelConfig",
           "LinearChainCRF", "SequenceClassifier", "SequenceClassifierConfig", "SequenceTagger",
           "SequenceTaggerConfig", "Forecaster", "ForecasterConfig"]
