"""Encoder classifier."""

from tfmoe.models.switch_classifier.switch_classifier import SwitchClassifier

__all__ = ["SwitchClassifier"]
