"""The feed-forward computations of dense FFNs and of stacked experts."""

import tensorflow as tf
from keras import ops


def _hidden_activations(project_in, layer, activation, dropout_layer, training):
    """`dropout(activation(project_in(wi)))`, or gated
    `dropout(activation(project_in(wi_0)) * project_in(wi_1))` when `layer.gated`."""
    if layer.gated:
        hidden = activation(project_in(layer.wi_0)) * project_in(layer.wi_1)
    else:
        hidden = activation(project_in(layer.wi))
    return dropout_layer(hidden, training=training)


def feed_forward(inputs, layer, activation, dropout_layer, training=None):
    """Dense FFN `wo(dropout(activation(x @ wi)))` (gated: `activation(x @ wi_0) * (x @ wi_1)`).

    Args:
      inputs: `[..., hidden]`.
      layer: the layer holding the kernels `wi` (or `wi_0`, `wi_1` when `layer.gated`)
        `[hidden, intermediate]` and `wo` `[intermediate, hidden]`.
      activation: activation callable.
      dropout_layer: dropout applied to the hidden activations.
      training: dropout switch.

    Returns:
      `[..., hidden]`.
    """
    hidden = _hidden_activations(lambda kernel: ops.matmul(inputs, kernel), layer,
                                 activation, dropout_layer, training)
    return ops.matmul(hidden, layer.wo)


def expert_feed_forward(inputs, layer, activation, dropout_layer, training=None):
    """E independent FFNs, each on its own token buffer, one batched matmul per kernel.

    Every kernel is stored `[E, intermediate, hidden]` and the hidden activations are
    computed feature-major, `[E, intermediate, tokens]`:

        hidden^T = activation(wi @ x^T)      # [E, F, H] @ [E, H, T] -> [E, F, T]
        y        = (hidden^T)^T @ wo         # [E, T, F] @ [E, F, H] -> [E, T, H]

    With this layout neither the forward pass nor any of TensorFlow's `BatchMatMul`
    gradients (`dx = (dh^T)^T @ wi`, `dwi = dh^T @ x`, `dh^T = wo @ dy^T`,
    `dwo = h^T @ dy`) takes a weight operand transposed, the form CPU batched GEMM
    kernels run up to 2x slower than the 2-D GEMM of the same FLOPs. Token-major
    `[E, hidden, intermediate]` kernels always hit it in one product
    (`benchmarks/moe_layer.py --layout_ablation`).

    Args:
      inputs: `[E, tokens, hidden]`.
      layer: the layer holding `wi` (or `wi_0`, `wi_1` when `layer.gated`) and `wo`,
        all `[E, intermediate, hidden]`.
      activation: activation callable.
      dropout_layer: dropout applied to the hidden activations.
      training: dropout switch.

    Returns:
      `[E, tokens, hidden]`.
    """
    # Tensors, not the variables: `tf.convert_to_tensor` applies mixed-precision autocasting.
    def project_in(kernel):
        return tf.matmul(tf.convert_to_tensor(kernel), inputs, adjoint_b=True)  # [E, F, T]

    hidden_t = _hidden_activations(project_in, layer, activation, dropout_layer, training)
    return tf.matmul(hidden_t, tf.convert_to_tensor(layer.wo), adjoint_a=True)   # [E, T, H]
