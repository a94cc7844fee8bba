"""Model zoo: Switch Transformer encoder-decoder, decoder-only LM, encoder classifier.

```python
model = tfmoe.models.SwitchTransformer.from_preset("switch_tiny_8")
lm = tfmoe.models.SwitchDecoderLM.from_preset("glam_tiny_8")
clf = tfmoe.models.SwitchClassifier.from_preset("switch_tiny_8", num_classes=3)
tfmoe.models.list_presets()
tfmoe.models.count_params("switch_c_2048")   # exact, no weights allocated
```
keras-hub family (functional `keras_hub.models.Backbone` / `CausalLM` subclasses, with
string preprocessing and directory presets):

```python
lm = tfmoe.models.SwitchCausalLM.from_preset("glam_tiny_8", vocabulary="vocab.txt")
lm.generate("some text", max_length=32)
lm.save_to_preset("my_lm")          # config.json, model.weights.h5, tokenizer assets
lm = keras_hub.models.CausalLM.from_preset("my_lm")
```
The preset table (total / active parameters) is in `tfmoe/models/README.md`.
"""

from tfmoe.models.distillation import Distiller, init_student_from_teacher
from tfmoe.models.param_count import count_active_params, count_params, preset_table
from tfmoe.models.presets import PRESETS, get_preset, list_presets
from tfmoe.models.switch_architecture import SwitchArchitecture
from tfmoe.models.switch_backbone import SwitchBackbone, SwitchSeq2SeqBackbone
from tfmoe.models.switch_causal_lm import SwitchCausalLM, SwitchCausalLMPreprocessor
from tfmoe.models.switch_classifier import SwitchClassifier
from tfmoe.models.switch_decoder_lm import SwitchDecoderLM
from tfmoe.models.switch_model import SwitchModel
from tfmoe.models.switch_seq2seq_lm import SwitchSeq2SeqLM, SwitchSeq2SeqLMPreprocessor
from tfmoe.models.switch_text_classifier import (SwitchTextClassifier,
                                                 SwitchTextClassifierPreprocessor)
from tfmoe.models.switch_tokenizer import SwitchSeq2SeqTokenizer, SwitchTokenizer
from tfmoe.models.switch_transformer import SwitchTransformer

__all__ = [
    "PRESETS",
    "Distiller",
    "SwitchArchitecture",
    "SwitchBackbone",
    "SwitchCausalLM",
    "SwitchCausalLMPreprocessor",
    "SwitchClassifier",
    "SwitchDecoderLM",
    "SwitchModel",
    "SwitchSeq2SeqBackbone",
    "SwitchSeq2SeqLM",
    "SwitchSeq2SeqLMPreprocessor",
    "SwitchSeq2SeqTokenizer",
    "SwitchTextClassifier",
    "SwitchTextClassifierPreprocessor",
    "SwitchTokenizer",
    "SwitchTransformer",
    "count_active_params",
    "count_params",
    "get_preset",
    "init_student_from_teacher",
    "list_presets",
    "preset_table",
]
