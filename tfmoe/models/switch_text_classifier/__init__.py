"""keras-hub text classifier task of the tfmoe models and its preprocessor."""

from tfmoe.models.switch_text_classifier.switch_text_classifier import SwitchTextClassifier
from tfmoe.models.switch_text_classifier.switch_text_classifier_preprocessor import (
    SwitchTextClassifierPreprocessor,
)

__all__ = ["SwitchTextClassifier", "SwitchTextClassifierPreprocessor"]
