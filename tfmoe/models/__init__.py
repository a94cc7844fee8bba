"""Model zoo: Switch Transformer encoder-decoder, decoder-only LM, encoder classifier.

One implementation, keras-hub style: a functional `SwitchBackbone` (token embedding and
transformer stacks) under the tasks `SwitchSeq2SeqLM`, `SwitchCausalLM` and
`SwitchTextClassifier`, with string preprocessing and directory presets.
`SwitchTransformer`, `SwitchDecoderLM` and `SwitchClassifier` are the same classes
under the zoo's names.

```python
model = tfmoe.models.SwitchTransformer.from_preset("switch_tiny_8")   # SwitchSeq2SeqLM
lm = tfmoe.models.SwitchDecoderLM.from_preset("glam_tiny_8")         # SwitchCausalLM
clf = tfmoe.models.SwitchClassifier.from_preset("switch_tiny_8", 3)  # SwitchTextClassifier
tfmoe.models.list_presets()
tfmoe.models.count_params("switch_c_2048")   # exact, no weights allocated
model.backbone.num_experts                   # architecture values live on the backbone

lm = tfmoe.models.SwitchCausalLM.from_preset("glam_tiny_8", vocabulary="vocab.txt")
lm.generate("some text", max_length=32)
lm.save_to_preset("my_lm")          # config.json, model.weights.h5, tokenizer assets
lm = keras_hub.models.CausalLM.from_preset("my_lm")
# A task trained on tfmoe.data batches (no preprocessor) + its vocabulary -> a preset:
tfmoe.models.save_task_preset(model, "my_preset", "vocab.txt", sequence_length=128)
model = tfmoe.models.load_task_preset("my_preset")
```
The preset table (total / active parameters) is in `tfmoe/models/README.md`.
"""

from tfmoe.models.distillation import Distiller, init_student_from_teacher
from tfmoe.models.param_count import count_active_params, count_params, preset_table
from tfmoe.models.presets import PRESETS, get_preset, list_presets
from tfmoe.models.switch_architecture import SwitchArchitecture
from tfmoe.models.switch_backbone import SwitchBackbone, SwitchSeq2SeqBackbone
from tfmoe.models.switch_causal_lm import SwitchCausalLM, SwitchCausalLMPreprocessor
from tfmoe.models.switch_sentencepiece_tokenizer import SwitchSentencePieceTokenizer
from tfmoe.models.switch_seq2seq_lm import SwitchSeq2SeqLM, SwitchSeq2SeqLMPreprocessor
from tfmoe.models.switch_text_classifier import (
    SwitchTextClassifier,
    SwitchTextClassifierPreprocessor,
)
from tfmoe.models.switch_tokenizer import SwitchSeq2SeqTokenizer, SwitchTokenizer
from tfmoe.models.task_presets import (
    encoder_only_config,
    init_backbone_from_preset,
    load_task_preset,
    save_task_preset,
)

# The zoo's names of the tasks (same classes).
SwitchTransformer = SwitchSeq2SeqLM
SwitchDecoderLM = SwitchCausalLM
SwitchClassifier = SwitchTextClassifier

__all__ = [
    "PRESETS",
    "Distiller",
    "SwitchArchitecture",
    "SwitchBackbone",
    "SwitchCausalLM",
    "SwitchCausalLMPreprocessor",
    "SwitchClassifier",
    "SwitchDecoderLM",
    "SwitchSeq2SeqBackbone",
    "SwitchSeq2SeqLM",
    "SwitchSeq2SeqLMPreprocessor",
    "SwitchSentencePieceTokenizer",
    "SwitchSeq2SeqTokenizer",
    "SwitchTextClassifier",
    "SwitchTextClassifierPreprocessor",
    "SwitchTokenizer",
    "SwitchTransformer",
    "count_active_params",
    "count_params",
    "encoder_only_config",
    "get_preset",
    "init_backbone_from_preset",
    "init_student_from_teacher",
    "list_presets",
    "load_task_preset",
    "preset_table",
    "save_task_preset",
]
