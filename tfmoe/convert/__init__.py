"""Checkpoint conversion: Hugging Face Switch Transformers -> `tfmoe.models.SwitchTransformer`.

`from_hf_switch(path)` converts a `SwitchTransformersForConditionalGeneration`
directory (config.json + safetensors, sharded or not) with NumPy only.
CLI: `python -m tfmoe.convert --hf_dir DIR --output model.keras`.
"""

from tfmoe.convert.hf_switch import (
    from_hf_switch,
    hf_weight_plan,
    load_hf_weights,
    read_hf_config,
    switch_transformer_arguments,
)
from tfmoe.convert.safetensors_checkpoint import SafetensorsCheckpoint

__all__ = [
    "SafetensorsCheckpoint",
    "from_hf_switch",
    "hf_weight_plan",
    "load_hf_weights",
    "read_hf_config",
    "switch_transformer_arguments",
]
