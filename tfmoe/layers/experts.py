"""Stacked expert feed-forward networks, one batched matmul per weight."""

import keras
import tensorflow as tf

from tfmoe.layers.feed_forward_math import expert_feed_forward
from tfmoe.layers.initializers import ExpertVarianceScaling

@keras.saving.register_keras_serializable(package="tfmoe")
class ExpertFeedForward(keras.layers.Layer):
    """`num_experts` independent bias-free FFNs applied to their own token buffers.

    Weights (T5 names), all `[E, intermediate, hidden]`: `wi` (each expert's
    `[out, in]`, as PyTorch's `Linear.weight`) and `wo` (each expert's `[in, out]`);
    with `gated=True` (GEGLU / SwiGLU, T5 v1.1 / Switch-XXL) `wi_0` and `wi_1` replace
    `wi` and the hidden state is `activation(x @ wi_0^T) * (x @ wi_1^T)`. This layout
    keeps every batched matmul of the forward and backward pass in a fast form (see
    `feed_forward_math.expert_feed_forward`); `kernel_in_out` gives any kernel as
    `[E, in, out]`.

    Call: `[E, tokens, hidden]` -> `[E, tokens, hidden]`.

    Args:
      num_experts: number of experts E.
      intermediate_dim: hidden size of each expert.
      activation: activation name or callable.
      gated: gated linear unit experts.
      dropout: dropout on the experts' hidden activations (Switch "expert dropout").
      init_scale: variance scale (truncated normal, std `sqrt(init_scale / fan_in)`).
    """

    def __init__(self, num_experts, intermediate_dim, activation="relu", gated=False,
                 dropout=0.0, init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.intermediate_dim = int(intermediate_dim)
        self.activation = keras.activations.get(activation)
        self.gated = bool(gated)
        self.dropout = float(dropout)
        self.init_scale = float(init_scale)
        self._dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        shape = (self.num_experts, self.intermediate_dim, input_shape[-1])
        # `wi` is [E, out, in] (fan-in last), `wo` is [E, in, out].
        wi_init = ExpertVarianceScaling(self.init_scale, fan_in_axis=-1)
        if self.gated:
            self.wi_0 = self.add_weight(name="wi_0", shape=shape, initializer=wi_init)
            self.wi_1 = self.add_weight(name="wi_1", shape=shape, initializer=wi_init)
        else:
            self.wi = self.add_weight(name="wi", shape=shape, initializer=wi_init)
        self.wo = self.add_weight(name="wo", shape=shape,
                                  initializer=ExpertVarianceScaling(self.init_scale))

    def call(self, inputs, training=None):
        return expert_feed_forward(inputs, self, self.activation, self._dropout_layer, training)

    @property
    def kernel_names(self):
        """The kernels' attribute names: `("wi", "wo")` or `("wi_0", "wi_1", "wo")`."""
        return ("wi_0", "wi_1", "wo") if self.gated else ("wi", "wo")

    @staticmethod
    def stored_out_in(name):
        """Whether kernel `name` is stored `[E, out, in]` (`wi*`) rather than `[E, in, out]` (`wo`)."""
        if name not in ("wi", "wi_0", "wi_1", "wo"):
            raise ValueError(f"Unknown expert kernel {name!r}.")
        return name != "wo"

    def kernel_in_out(self, name):
        """Kernel `name` as `[E, in, out]` (a tensor): `x @ kernel_in_out(name)[e]` is
        expert `e`'s projection."""
        kernel = tf.convert_to_tensor(getattr(self, name))
        return tf.linalg.matrix_transpose(kernel) if self.stored_out_in(name) else kernel

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
