"""The feed-forward computation shared by dense FFNs and stacked experts."""

import tensorflow as tf
from keras import ops


@tf.custom_gradient
def expert_matmul(inputs, weights):
    """Per-expert matmul `[E, M, K] @ [E, K, N] -> [E, M, N]` with a faster input gradient.

    The input gradient `dy @ w^T` is computed as `(w @ dy^T)^T`: a `BatchMatMul` with
    the (large) weight operand adjoint is 1.3-1.4x slower on CPU than one with the
    (small) token operand adjoint, and the transpose of the `[E, K, M]` result is cheap
    next to it (`benchmarks/moe_layer.py`). Values are the same as `tf.matmul`'s gradient.
    """
    def grad(d_outputs):
        d_inputs = tf.linalg.matrix_transpose(tf.matmul(weights, d_outputs, adjoint_b=True))
        d_weights = tf.matmul(inputs, d_outputs, adjoint_a=True)
        return d_inputs, d_weights

    return tf.matmul(inputs, weights), grad


def _matmul(inputs, weights):
    if len(weights.shape) == 3:
        # A tensor, not the variable: reading it inside `expert_matmul` would need
        # `custom_gradient`'s `variables` protocol. Keeps mixed-precision autocasting.
        return expert_matmul(inputs, tf.convert_to_tensor(weights))
    return ops.matmul(inputs, weights)


def feed_forward(inputs, layer, activation, dropout_layer, training=None):
    """`wo(dropout(activation(x @ wi)))`, or gated `wo(dropout(activation(x @ wi_0) * (x @ wi_1)))`.

    Works for a dense FFN (`wi` `[hidden, intermediate]`, inputs `[..., hidden]`) and for
    stacked experts (`wi` `[E, hidden, intermediate]`, inputs `[E, tokens, hidden]`): the
    matmuls batch over the leading expert axis.

    Args:
      inputs: `[..., hidden]`.
      layer: the layer holding the weights `wi` (or `wi_0`, `wi_1` when `layer.gated`), `wo`.
      activation: activation callable.
      dropout_layer: dropout applied to the hidden activations.
      training: dropout switch.
    """
    if layer.gated:
        hidden = activation(_matmul(inputs, layer.wi_0)) * _matmul(inputs, layer.wi_1)
    else:
        hidden = activation(_matmul(inputs, layer.wi))
    hidden = dropout_layer(hidden, training=training)
    return _matmul(hidden, layer.wo)
