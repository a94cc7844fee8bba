"""Dense (bias-free) T5 feed-forward network, the non-expert counterpart of the MoE layers."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmoe")
class DenseFeedForward(keras.layers.Layer):
    """T5 `DenseReluDense` / `DenseGatedActDense` without biases.

    `wo(dropout(activation(x @ wi)))`, or with `gated=True` (GEGLU / SwiGLU, T5 v1.1)
    `wo(dropout(activation(x @ wi_0) * (x @ wi_1)))`. Same call signature as
    `SwitchFeedForward` so a transformer block can hold either.

    Args:
      intermediate_dim: hidden size of the network (T5 `d_ff`).
      activation: activation name or callable (keras names, e.g. "relu", "gelu").
      gated: gated linear unit variant.
      dropout: dropout rate on the hidden activations.
      init_scale: variance scale of the initializers (normal with std
        `sqrt(init_scale / fan_in)`: `wi` `hidden`, `wo` `intermediate_dim`), the same
        rule as the MoE layers' experts.

    Call arguments:
      x: `[batch, seq, hidden]`.
      padding_mask: accepted for interface parity with the MoE layers; unused.
      training: dropout switch.

    Returns:
      `[batch, seq, hidden]`.

    Weights (`[in, out]`, i.e. transposed PyTorch `Linear.weight`): `wi`
    `[hidden, intermediate_dim]` (or `wi_0`, `wi_1`) and `wo` `[intermediate_dim, hidden]`.
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        gated=False,
        dropout=0.0,
        init_scale=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(intermediate_dim) < 1:
            raise ValueError(f"`intermediate_dim` must be >= 1, got {intermediate_dim}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        self.intermediate_dim = int(intermediate_dim)
        self.activation = activation
        self._activation_fn = keras.activations.get(activation)
        self.gated = bool(gated)
        self.dropout = float(dropout)
        if not init_scale > 0:
            raise ValueError(f"`init_scale` must be > 0, got {init_scale}.")
        self.init_scale = float(init_scale)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        hidden = int(input_shape[-1])
        scale = self.init_scale**0.5
        wi_init = keras.initializers.RandomNormal(stddev=scale * hidden**-0.5)
        wo_init = keras.initializers.RandomNormal(stddev=scale * self.intermediate_dim**-0.5)
        in_shape = (hidden, self.intermediate_dim)
        if self.gated:
            self.wi_0 = self.add_weight(name="wi_0", shape=in_shape, initializer=wi_init)
            self.wi_1 = self.add_weight(name="wi_1", shape=in_shape, initializer=wi_init)
        else:
            self.wi = self.add_weight(name="wi", shape=in_shape, initializer=wi_init)
        self.wo = self.add_weight(
            name="wo", shape=(self.intermediate_dim, hidden), initializer=wo_init
        )
        self.built = True

    def call(self, x, padding_mask=None, training=None):
        if self.gated:
            hidden = self._activation_fn(ops.matmul(x, self.wi_0)) * ops.matmul(x, self.wi_1)
        else:
            hidden = self._activation_fn(ops.matmul(x, self.wi))
        return ops.matmul(self.dropout_layer(hidden, training=training), self.wo)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            intermediate_dim=self.intermediate_dim,
            activation=keras.activations.serialize(self._activation_fn),
            gated=self.gated,
            dropout=self.dropout,
            init_scale=self.init_scale,
        )
        return config
