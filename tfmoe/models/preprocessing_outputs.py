"""Inputs and eager outputs of the tfmoe preprocessing layers, in keras-hub's convention."""

import keras
import numpy as np
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


def eager_text(text):
    """Detokenized `text` as keras-hub's tokenizers return it when run eagerly.

    Eagerly: a `str` for a scalar, a list of `str` for `[batch]`; in a graph the
    `tf.string` tensor unchanged.
    """
    if not tf.executing_eagerly():
        return text
    text = text.numpy()
    if isinstance(text, bytes):
        return text.decode("utf-8")
    return [t.decode("utf-8") for t in text.tolist()]


def id_tensor(ids):
    """Python lists / NumPy arrays / tensors of ids -> an int32 tf tensor or RaggedTensor.

    A list of lists (rows of any lengths) becomes `[batch, (ids)]` ragged; a flat list
    `[ids]`.
    """
    if isinstance(ids, (tf.Tensor, tf.RaggedTensor)):
        return ids
    if isinstance(ids, np.ndarray):
        return tf.convert_to_tensor(ids.astype("int32"))
    if isinstance(ids, (list, tuple)):
        if ids and isinstance(ids[0], (list, tuple, np.ndarray)):
            return tf.ragged.constant([list(row) for row in ids], dtype=tf.int32, ragged_rank=1)
        return tf.constant(list(ids), dtype=tf.int32, shape=[len(ids)])
    return tf.convert_to_tensor(keras.ops.convert_to_numpy(ids).astype("int32"))
