"""keras-hub causal LM task of the tfmoe models and its preprocessor."""

from tfmoe.models.switch_causal_lm.switch_causal_lm import SwitchCausalLM
from tfmoe.models.switch_causal_lm.switch_causal_lm_preprocessor import SwitchCausalLMPreprocessor

__all__ = ["SwitchCausalLM", "SwitchCausalLMPreprocessor"]
