"""Checks and conversions of the text inputs of the tokenizer layers."""

import numpy as np
import tensorflow as tf


def is_text_value(value):
    """Whether `value` is something TF ops take as it is: str, bytes, (lists of) them, numpy, a dense TF tensor."""
    if isinstance(value, (str, bytes, np.ndarray)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_text_value(v) for v in value)
    return isinstance(value, tf.Tensor)


def as_string_tensor(value, name):
    """Python str / bytes / (nested) list / numpy / tf.string -> dense `tf.string` Tensor, or a TypeError."""
    if isinstance(value, tf.Tensor) and value.dtype == tf.string:
        return value
    if isinstance(value, tf.RaggedTensor):
        raise TypeError(f"`{name}` must be a dense string tensor, got a RaggedTensor; pass `{name}.flat_values`")
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        is_string = dtype == tf.string if isinstance(dtype, tf.dtypes.DType) else np.dtype(dtype).kind in "OSU"
        if not is_string:
            raise TypeError(f"`{name}` must be strings (tf.string), got dtype {dtype}")
    try:
        return tf.convert_to_tensor(value, dtype=tf.string)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a string or a (nested) list/tensor of strings, got {value!r:.80}: {error}"
        ) from None
