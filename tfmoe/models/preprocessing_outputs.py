"""Eager outputs of the tfmoe preprocessing layers, in keras-hub's convention."""

import tensorflow as tf


def eager_outputs(outputs):
    """`outputs` as keras-hub's preprocessing layers return them when run eagerly.

    Run eagerly (in Python, or in a Grain worker that pickles every element), dense
    tensors become NumPy arrays and ragged ones lists of lists; in a graph (`tf.data`,
    `tf.function`) `outputs` are returned unchanged.

    Args:
      outputs: a tensor, RaggedTensor, or a (nested) dict / tuple / list of them.
    """
    if not tf.executing_eagerly():
        return outputs
    if isinstance(outputs, dict):
        return {key: eager_outputs(value) for key, value in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(eager_outputs(value) for value in outputs)
    if isinstance(outputs, tf.RaggedTensor):
        return outputs.to_list()
    if isinstance(outputs, tf.Tensor):
        return outputs.numpy()
    return outputs
