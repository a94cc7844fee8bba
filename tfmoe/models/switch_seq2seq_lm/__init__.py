"""keras-hub seq2seq LM task of the tfmoe models (Switch Transformer) and its preprocessor."""

from tfmoe.models.switch_seq2seq_lm.switch_seq2seq_lm import SwitchSeq2SeqLM
from tfmoe.models.switch_seq2seq_lm.switch_seq2seq_lm_preprocessor import (
    SwitchSeq2SeqLMPreprocessor,
)

__all__ = ["SwitchSeq2SeqLM", "SwitchSeq2SeqLMPreprocessor"]
