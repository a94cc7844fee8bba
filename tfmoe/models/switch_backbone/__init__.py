"""keras-hub backbone of the tfmoe models: token embedding and transformer stacks."""

from tfmoe.models.switch_backbone.switch_backbone import (
    LAYOUTS,
    SwitchBackbone,
    SwitchSeq2SeqBackbone,
)

__all__ = ["LAYOUTS", "SwitchBackbone", "SwitchSeq2SeqBackbone"]
