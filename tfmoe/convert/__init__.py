"""Checkpoint conversion: Hugging Face Switch Transformers -> `tfmoe.models.SwitchTransformer`.

`from_hf_switch(path)` converts a `SwitchTransformersForConditionalGeneration`
directory (config.json + safetensors, sharded or not) with NumPy only;
`hf_switch_to_preset(path, preset_dir)` also adds its T5 tokenizer (`spiece.model`) and
writes a keras-hub preset directory.
CLI: `python -m tfmoe.convert --hf_dir DIR --output PRESET_DIR`.
"""

from tfmoe.convert.hf_switch import (
    from_hf_switch,
    hf_weight_plan,
    load_hf_weights,
    read_hf_config,
    switch_transformer_arguments,
)
from tfmoe.convert.preset import hf_switch_to_preset
from tfmoe.convert.safetensors_checkpoint import SafetensorsCheckpoint

__all__ = [
    "SafetensorsCheckpoint",
    "from_hf_switch",
    "hf_switch_to_preset",
    "hf_weight_plan",
    "load_hf_weights",
    "read_hf_config",
    "switch_transformer_arguments",
]
