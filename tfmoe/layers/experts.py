"""Stacked expert feed-forward networks, one batched matmul per weight."""

import keras

from tfmoe.layers.feed_forward_math import feed_forward
from tfmoe.layers.initializers import ExpertVarianceScaling


@keras.saving.register_keras_serializable(package="tfmoe")
class ExpertFeedForward(keras.layers.Layer):
    """`num_experts` independent bias-free FFNs applied to their own token buffers.

    Weights (T5 names): `wi` `[E, hidden, intermediate]` and `wo` `[E, intermediate, hidden]`;
    with `gated=True` (GEGLU / SwiGLU, T5 v1.1 / Switch-XXL) `wi_0` and `wi_1` replace
    `wi` and the hidden state is `activation(x @ wi_0) * (x @ wi_1)`.

    Call: `[E, tokens, hidden]` -> `[E, tokens, hidden]`.

    Args:
      num_experts: number of experts E.
      intermediate_dim: hidden size of each expert.
      activation: activation name or callable.
      gated: gated linear unit experts.
      dropout: dropout on the experts' hidden activations (Switch "expert dropout").
      init_scale: reduced init scale (truncated normal, std sqrt(init_scale / fan_in)).
    """

    def __init__(self, num_experts, intermediate_dim, activation="relu", gated=False,
                 dropout=0.0, init_scale=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.intermediate_dim = int(intermediate_dim)
        self.activation = keras.activations.get(activation)
        self.gated = bool(gated)
        self.dropout = float(dropout)
        self.init_scale = float(init_scale)
        self._dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        hidden = input_shape[-1]
        in_shape = (self.num_experts, hidden, self.intermediate_dim)
        out_shape = (self.num_experts, self.intermediate_dim, hidden)
        init = ExpertVarianceScaling(self.init_scale)
        if self.gated:
            self.wi_0 = self.add_weight(name="wi_0", shape=in_shape, initializer=init)
            self.wi_1 = self.add_weight(name="wi_1", shape=in_shape, initializer=init)
        else:
            self.wi = self.add_weight(name="wi", shape=in_shape, initializer=init)
        self.wo = self.add_weight(name="wo", shape=out_shape, initializer=init)

    def call(self, inputs, training=None):
        return feed_forward(inputs, self, self.activation, self._dropout_layer, training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            intermediate_dim=self.intermediate_dim,
            activation=keras.activations.serialize(self.activation),
            gated=self.gated,
            dropout=self.dropout,
            init_scale=self.init_scale,
        )
        return config
