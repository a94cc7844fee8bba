"""Decoder-only causal LM."""

from tfmoe.models.switch_decoder_lm.switch_decoder_lm import SwitchDecoderLM

__all__ = ["SwitchDecoderLM"]
