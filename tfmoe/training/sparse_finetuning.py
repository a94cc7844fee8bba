"""Fine-tuning options of sparse models (Switch Transformer / ST-MoE practice).

The Switch Transformer and ST-MoE papers fine-tune sparse models with: the routers
frozen (`freeze_routers`; ST-MoE found it as good and more stable), expert dropout higher
than the dense dropout (`expert_dropout`, Switch: 0.4), a training capacity factor
(`capacity_factor`, ST-MoE: 1.25) and the router z-loss on (`z_loss_weight`, ST-MoE:
0.001). The last three are architecture arguments of the tfmoe models.
"""

from tfmoe.training.callbacks import moe_layers


def freeze_routers(model):
    """Makes the router of every MoE layer of `model` non-trainable (call before `compile`).

    Returns:
      The number of routers frozen (0 for a dense model).
    """
    layers = moe_layers(model)
    for layer in layers:
        layer.router.trainable = False
    return len(layers)
