"""The router: a bias-free linear map from token states to expert logits.

Selective precision (Switch paper, section 2.4): the router runs in `router_dtype`
(float32 by default) even under a `mixed_bfloat16` policy, because the softmax over
experts is sensitive to rounding. Keras casts the (bfloat16) inputs to float32 on the
way in, since this sublayer's dtype policy is float32.
"""

import keras
import tensorflow as tf
from keras import ops


@tf.custom_gradient
def _router_matmul(tokens, kernel):
    """`[N, hidden] @ [hidden, E]` whose kernel gradient is `(dy^T @ x)^T`.

    `x^T @ dy` (the autodiff form) contracts over the long token axis with the tall
    operand transposed: about 1.8x slower on CPU than `dy^T @ x` plus the transpose of
    the small `[E, hidden]` result.
    """

    def grad(d_logits):
        d_tokens = tf.matmul(d_logits, kernel, transpose_b=True)
        d_kernel = tf.transpose(tf.matmul(d_logits, tokens, transpose_a=True))
        return d_tokens, d_kernel

    return tf.matmul(tokens, kernel), grad


def router_logits(inputs, kernel):
    """Router logits `[..., num_experts]` of token states `[..., hidden]`.

    The one implementation of the router's projection: `Router` calls it with its
    variable, `tfmoe.distribute.ExpertParallelMoe` with a replicated DTensor.

    Args:
      inputs: `[..., hidden]` token states.
      kernel: `[hidden, num_experts]` tensor.
    """
    hidden, num_experts = inputs.shape[-1], kernel.shape[-1]
    logits = _router_matmul(tf.reshape(inputs, [-1, hidden]), kernel)
    leading = [
        dim if dim is not None else tf.shape(inputs)[axis]
        for axis, dim in enumerate(inputs.shape[:-1])
    ]
    return tf.reshape(logits, leading + [num_experts])


@keras.saving.register_keras_serializable(package="tfmoe")
class Router(keras.layers.Layer):
    """Computes router logits `[batch, seq, num_experts]` from `[batch, seq, hidden]`.

    Args:
      num_experts: number of experts.
      jitter_noise: multiplicative input noise `uniform(1 - eps, 1 + eps)`, training only.
      kernel_initializer: initializer for the `[hidden, num_experts]` kernel.
      seed: seed of the jitter noise.
    """

    def __init__(
        self,
        num_experts,
        jitter_noise=0.0,
        kernel_initializer="glorot_uniform",
        seed=None,
        dtype="float32",
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)
        self.num_experts = int(num_experts)
        self.jitter_noise = float(jitter_noise)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed) if jitter_noise > 0 else None

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.num_experts),
            initializer=self.kernel_initializer,
        )

    def call(self, inputs, training=None):
        if training and self.jitter_noise > 0:
            inputs = inputs * keras.random.uniform(
                ops.shape(inputs),
                1.0 - self.jitter_noise,
                1.0 + self.jitter_noise,
                dtype=inputs.dtype,
                seed=self._seed_generator,
            )
        # The kernel as a tensor (read under any autocast scope), not the variable.
        return router_logits(inputs, tf.convert_to_tensor(self.kernel))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_experts,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            jitter_noise=self.jitter_noise,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            seed=self.seed,
        )
        return config
