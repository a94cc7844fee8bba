"""Stacked expert feed-forward networks, one batched matmul per weight."""

import keras
import numpy as np
import tensorflow as tf

from tfmoe.layers.feed_forward_math import expert_feed_forward
from tfmoe.layers.initializers import ExpertVarianceScaling

# Saved weight files carry the expert kernel layout under this key, next to the
# variables "0", "1", ... that `keras.layers.Layer.save_own_variables` writes.
KERNEL_LAYOUT_KEY = "kernel_layout"
# 1: `wi*` stored `[E, hidden, intermediate]` (files written before the layout
#    marker existed, which carry no key); 2: `wi*` stored `[E, intermediate, hidden]`.
# `wo` is `[E, intermediate, hidden]` in both.
TOKEN_MAJOR_LAYOUT = 1
FEATURE_MAJOR_LAYOUT = 2


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

    def save_own_variables(self, store):
        """Writes the kernels as Keras does plus the layout marker `KERNEL_LAYOUT_KEY`."""
        super().save_own_variables(store)
        store[KERNEL_LAYOUT_KEY] = np.array(FEATURE_MAJOR_LAYOUT, dtype="int32")

    def load_own_variables(self, store):
        """Reads kernels of either layout; unmarked (older) files hold `wi*` as
        `[E, hidden, intermediate]` and are transposed on load, so they load correctly
        even when hidden == intermediate, where the shapes alone cannot tell."""
        keys = set(store.keys())
        layout = TOKEN_MAJOR_LAYOUT
        if KERNEL_LAYOUT_KEY in keys:
            keys.discard(KERNEL_LAYOUT_KEY)
            layout = int(np.asarray(store[KERNEL_LAYOUT_KEY]))
        if layout not in (TOKEN_MAJOR_LAYOUT, FEATURE_MAJOR_LAYOUT):
            raise ValueError(
                f"Layer '{self.name}': saved `{KERNEL_LAYOUT_KEY}` is {layout}; this "
                f"version of tfmoe reads layouts {TOKEN_MAJOR_LAYOUT} and "
                f"{FEATURE_MAJOR_LAYOUT}. The file was written by a newer tfmoe.")
        variables = self._trainable_variables + self._non_trainable_variables
        if keys != {str(i) for i in range(len(variables))}:
            raise ValueError(
                f"Layer '{self.name}' holds {len(variables)} expert kernels "
                f"{self.kernel_names} (gated={self.gated}) but the weights file lists "
                f"{sorted(keys)}.")
        for i, variable in enumerate(variables):
            value = np.asarray(store[str(i)])
            if layout == TOKEN_MAJOR_LAYOUT and self.stored_out_in(variable.name):
                value = np.swapaxes(value, -1, -2)
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Layer '{self.name}': saved kernel {i} has shape {value.shape}, "
                    f"the layer's `{variable.name}` is {tuple(variable.shape)}.")
            variable.assign(value)

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
