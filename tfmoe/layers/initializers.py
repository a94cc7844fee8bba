"""Initializers for expert weights."""

import math

import keras


@keras.saving.register_keras_serializable(package="tfmoe")
class ExpertVarianceScaling(keras.initializers.Initializer):
    """Switch-paper reduced-scale init for stacked expert kernels `[experts, fan_in, fan_out]`.

    Truncated normal (cut at 2 standard deviations) with standard deviation
    `sqrt(scale / fan_in)`, where `fan_in = shape[-2]` is the fan-in of ONE expert.
    (`keras.initializers.VarianceScaling` would count the expert axis as a receptive
    field and shrink the weights by another `sqrt(num_experts)`.) The Switch paper
    uses `scale=0.1` instead of the usual 1.0 for stability.
    """

    def __init__(self, scale=0.1, seed=None):
        if scale <= 0:
            raise ValueError(f"`scale` must be > 0, got {scale}.")
        self.scale = float(scale)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        if len(shape) < 2:
            raise ValueError(f"ExpertVarianceScaling needs a rank >= 2 shape, got {shape}.")
        # 0.8796... is the std of a unit normal truncated at +-2: correct for it so the
        # final std is sqrt(scale / fan_in), as keras' VarianceScaling does.
        stddev = math.sqrt(self.scale / max(1, shape[-2])) / 0.87962566103423978
        return keras.initializers.TruncatedNormal(stddev=stddev, seed=self.seed)(
            shape, dtype=dtype)

    def get_config(self):
        return {"scale": self.scale, "seed": self.seed}
