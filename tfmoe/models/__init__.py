"""Model zoo: Switch Transformer encoder-decoder, decoder-only LM, encoder classifier.

```python
model = tfmoe.models.SwitchTransformer.from_preset("switch_tiny_8")
lm = tfmoe.models.SwitchDecoderLM.from_preset("glam_tiny_8")
clf = tfmoe.models.SwitchClassifier.from_preset("switch_tiny_8", num_classes=3)
tfmoe.models.list_presets()
tfmoe.models.count_params("switch_c_2048")   # exact, no weights allocated
```
The preset table (total / active parameters) is in `tfmoe/models/README.md`.
"""

from tfmoe.models.distillation import Distiller, init_student_from_teacher
from tfmoe.models.param_count import count_active_params, count_params, preset_table
from tfmoe.models.presets import PRESETS, get_preset, list_presets
from tfmoe.models.switch_classifier import SwitchClassifier
from tfmoe.models.switch_decoder_lm import SwitchDecoderLM
from tfmoe.models.switch_model import SwitchModel
from tfmoe.models.switch_transformer import SwitchTransformer

__all__ = [
    "PRESETS",
    "Distiller",
    "SwitchClassifier",
    "SwitchDecoderLM",
    "SwitchModel",
    "SwitchTransformer",
    "count_active_params",
    "count_params",
    "get_preset",
    "init_student_from_teacher",
    "list_presets",
    "preset_table",
]
