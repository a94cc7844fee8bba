"""T5-style RMS layer normalization (no mean subtraction, no bias)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmoe")
class RMSNorm(keras.layers.Layer):
    """Root-mean-square layer norm as used by T5 / Switch Transformers.

    `y = x / sqrt(mean(x**2, axis=-1) + epsilon) * scale`. The statistic and the
    normalization are computed in float32 whatever the compute dtype (the
    `T5LayerNorm` of Hugging Face does the same); the result is cast back to
    the layer's compute dtype.

    Args:
        epsilon: float, added to the mean square. Defaults to `1e-6`.

    Call arguments:
        x: `[..., hidden_dim]` tensor.

    Returns:
        Tensor of the same shape, in the compute dtype.

    Weights:
        `scale`: `[hidden_dim]`, initialized to ones
        (Hugging Face: `*.layer_norm.weight`).
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise ValueError(f"`epsilon` must be positive, got {epsilon}.")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale",
            shape=(input_shape[-1],),
            initializer="ones",
            autocast=False,
        )
        self.built = True

    def call(self, x):
        # Keras' op computes in float32 for half-precision inputs; the scale stays float32
        # (`autocast=False`: `keras.layers.RMSNormalization` would round it to bfloat16
        # under `mixed_bfloat16`).
        normalized = ops.rms_normalization(
            ops.cast(x, "float32"), scale=self.scale, epsilon=self.epsilon
        )
        return ops.cast(normalized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
