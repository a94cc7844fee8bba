"""Encoder-decoder Switch Transformer."""

from tfmoe.models.switch_transformer.switch_transformer import SwitchTransformer

__all__ = ["SwitchTransformer"]
