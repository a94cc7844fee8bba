"""Stacked expert feed-forward networks, one batched matmul per weight."""

import keras
import tensorflow as tf

from tfmoe.layers.initializers import ExpertVarianceScaling


def expert_feed_forward(inputs, kernels, activation, dropout=None, training=None):
    """E independent bias-free FFNs, each on its own token buffer, one batched matmul
    per kernel.

    Every kernel is `[E, intermediate, hidden]` and the hidden activations are
    computed feature-major, `[E, intermediate, tokens]`:

        hidden^T = activation(wi @ x^T)      # [E, F, H] @ [E, H, T] -> [E, F, T]
        y        = (hidden^T)^T @ wo         # [E, T, F] @ [E, F, H] -> [E, T, H]

    With this layout neither the forward pass nor any of TensorFlow's `BatchMatMul`
    gradients (`dx = (dh^T)^T @ wi`, `dwi = dh^T @ x`, `dh^T = wo @ dy^T`,
    `dwo = h^T @ dy`) takes a weight operand transposed, the form CPU batched GEMM
    kernels run up to 2x slower than the 2-D GEMM of the same FLOPs. Token-major
    `[E, hidden, intermediate]` kernels always hit it in one product
    (`benchmarks/moe_layer.py --layout_ablation`).

    The one implementation of the experts' math: `ExpertFeedForward` calls it with its
    variables, `tfmoe.distribute.ExpertParallelMoe` with expert-sharded DTensors.

    Args:
      inputs: `[E, tokens, hidden]`.
      kernels: `{"wi" (or "wi_0" and "wi_1" for gated experts), "wo"}`, tensors
        `[E, intermediate, hidden]`; gated: `activation(wi_0 x) * (wi_1 x)`.
      activation: activation callable.
      dropout: optional dropout layer applied to the hidden activations.
      training: dropout switch.

    Returns:
      `[E, tokens, hidden]`.
    """

    def project_in(name):
        return tf.matmul(kernels[name], inputs, adjoint_b=True)  # [E, F, T]

    if "wi" in kernels:
        hidden_t = activation(project_in("wi"))
    else:
        hidden_t = activation(project_in("wi_0")) * project_in("wi_1")
    if dropout is not None:
        hidden_t = dropout(hidden_t, training=training)
    return tf.matmul(hidden_t, kernels["wo"], adjoint_a=True)  # [E, T, H]


@keras.saving.register_keras_serializable(package="tfmoe")
class ExpertFeedForward(keras.layers.Layer):
    """`num_experts` independent bias-free FFNs applied to their own token buffers.

    Weights (T5 names), all `[E, intermediate, hidden]`: `wi` (each expert's
    `[out, in]`, as PyTorch's `Linear.weight`) and `wo` (each expert's `[in, out]`);
    with `gated=True` (GEGLU / SwiGLU, T5 v1.1 / Switch-XXL) `wi_0` and `wi_1` replace
    `wi` and the hidden state is `activation(x @ wi_0^T) * (x @ wi_1^T)`. This layout
    keeps every batched matmul of the forward and backward pass in a fast form (see
    `expert_feed_forward`); `kernel_in_out` gives any kernel as `[E, in, out]`.

    Call: `[E, tokens, hidden]` -> `[E, tokens, hidden]`.

    Args:
      num_experts: number of experts E.
      intermediate_dim: hidden size of each expert.
      activation: activation name or callable.
      gated: gated linear unit experts.
      dropout: dropout on the experts' hidden activations (Switch "expert dropout").
      init_scale: variance scale (truncated normal, std `sqrt(init_scale / fan_in)`).
    """

    def __init__(
        self,
        num_experts,
        intermediate_dim,
        activation="relu",
        gated=False,
        dropout=0.0,
        init_scale=1.0,
        **kwargs,
    ):
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
        self.wo = self.add_weight(
            name="wo", shape=shape, initializer=ExpertVarianceScaling(self.init_scale)
        )

    def call(self, inputs, training=None):
        # Tensors, not the variables: `tf.convert_to_tensor` applies mixed-precision autocasting.
        kernels = {name: tf.convert_to_tensor(getattr(self, name)) for name in self.kernel_names}
        return expert_feed_forward(inputs, kernels, self.activation, self._dropout_layer, training)

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
