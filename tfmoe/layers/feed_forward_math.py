"""The feed-forward computation shared by dense FFNs and stacked experts."""

from keras import ops


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
        hidden = activation(ops.matmul(inputs, layer.wi_0)) * ops.matmul(inputs, layer.wi_1)
    else:
        hidden = activation(ops.matmul(inputs, layer.wi))
    hidden = dropout_layer(hidden, training=training)
    return ops.matmul(hidden, layer.wo)
