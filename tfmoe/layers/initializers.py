"""Initializers for expert weights."""

import math

import keras


@keras.saving.register_keras_serializable(package="tfmoe")
class ExpertVarianceScaling(keras.initializers.Initializer):
    """Variance-scaling init for stacked expert kernels `[experts, ..., ...]`.

    Truncated normal (cut at 2 standard deviations) with standard deviation
    `sqrt(scale / fan_in)`, where `fan_in = shape[fan_in_axis]` is the fan-in of ONE
    expert: `-2` for `[experts, in, out]` kernels, `-1` for `[experts, out, in]`
    ones. (`keras.initializers.VarianceScaling` would count the expert axis as a
    receptive field and shrink the weights by another `sqrt(num_experts)`.) The Switch
    paper uses `scale=0.1` for every weight of the model; tfmoe's layers default to 1.0.
    """

    def __init__(self, scale=1.0, seed=None, fan_in_axis=-2):
        if scale <= 0:
            raise ValueError(f"`scale` must be > 0, got {scale}.")
        if fan_in_axis not in (-1, -2):
            raise ValueError(f"`fan_in_axis` must be -1 or -2, got {fan_in_axis}.")
        self.scale = float(scale)
        self.seed = seed
        self.fan_in_axis = int(fan_in_axis)

    def __call__(self, shape, dtype=None):
        if len(shape) < 2:
            raise ValueError(f"ExpertVarianceScaling needs a rank >= 2 shape, got {shape}.")
        # 0.8796... is the std of a unit normal truncated at +-2: correct for it so the
        # final std is sqrt(scale / fan_in), as keras' VarianceScaling does.
        stddev = math.sqrt(self.scale / max(1, shape[self.fan_in_axis])) / 0.87962566103423978
        return keras.initializers.TruncatedNormal(stddev=stddev, seed=self.seed)(shape, dtype=dtype)

    def get_config(self):
        return {"scale": self.scale, "seed": self.seed, "fan_in_axis": self.fan_in_axis}
