"""`TokenizerLayer`: what tfmoe's tokenizer layers share (input checks, output shapes, vocabulary lookups)."""

import keras
import numpy as np
import tensorflow as tf


class TokenizerLayer(keras.layers.Layer):
    """Base of the tokenizer layers: strings of any shape in, int32 ids out.

    A subclass sets `self._vocabulary` (tokens, index = id), `self._token_to_id`,
    `self.sequence_length` and `pad_token_id`, and implements
    `_tokenize_flat(text)`: `[n]` strings -> int32 ids `[n, (tokens)]` (int64 row
    splits).

    `tokenize(inputs)`: `[...]` strings -> ids `[..., (tokens)]` (ragged), or dense
    `[..., sequence_length]` padded with `pad_token_id` when `sequence_length` is set;
    a scalar string gives `[tokens]`.
    """

    @tf.autograph.experimental.do_not_convert
    def __call__(self, inputs, *args, **kwargs):
        # Strings and TF tensors go straight to `tokenize`. Keras' per-call work (masks,
        # autocasting, name scopes), which a string-to-ids layer without weights does
        # not need, takes longer than tokenizing a sentence eagerly, and adds to the
        # start-up of every tf.data pipeline. Keras' symbolic tensors (functional
        # models) still go through Keras.
        if not args and not kwargs and is_text_value(inputs):
            return self.tokenize(inputs)
        return super().__call__(inputs, *args, **kwargs)

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs):
        return self.tokenize(inputs)

    @tf.autograph.experimental.do_not_convert
    def tokenize(self, inputs):
        """Strings -> int32 ids (see the class docstring for shapes)."""
        text = as_string_tensor(inputs, "inputs")
        shape = text.shape
        flat_ids = self._tokenize_flat(text if shape.rank == 1 else tf.reshape(text, [-1]))
        if self.sequence_length is not None:
            dense = flat_ids.to_tensor(
                default_value=self.pad_token_id, shape=[None, self.sequence_length]
            )
            return tf.reshape(dense, tf.concat([tf.shape(text), [self.sequence_length]], axis=0))
        if shape.rank == 0:
            return flat_ids.flat_values  # the only row
        ids = flat_ids
        for size in reversed(shape[1:]):
            ids = tf.RaggedTensor.from_uniform_row_length(ids, size, validate=False)
        return ids

    def _tokenize_flat(self, text):
        raise NotImplementedError

    # Vocabulary.

    def get_vocabulary(self):
        """The tokens, as a list (index = id)."""
        return list(self._vocabulary)

    def vocabulary_size(self):
        return len(self._vocabulary)

    def token_to_id(self, token):
        """Id of `token`; raises `KeyError` if it is not in the vocabulary."""
        return self._token_to_id[token]

    def id_to_token(self, token_id):
        return self._vocabulary[token_id]


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
        raise TypeError(
            f"`{name}` must be a dense string tensor, got a RaggedTensor; pass `{name}.flat_values`"
        )
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        is_string = (
            dtype == tf.string
            if isinstance(dtype, tf.dtypes.DType)
            else np.dtype(dtype).kind in "OSU"
        )
        if not is_string:
            raise TypeError(f"`{name}` must be strings (tf.string), got dtype {dtype}")
    try:
        return tf.convert_to_tensor(value, dtype=tf.string)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a string or a (nested) list/tensor of strings, got {value!r:.80}: {error}"
        ) from None
