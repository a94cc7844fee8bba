"""Raw text -> fixed-length model inputs inside the serving graph.

Every function takes a `tf.string [batch]` tensor and returns static-width
tensors, so the model part of a signature sees `[batch, length]` shapes only.
Tokenization reuses the training pipelines' rules (`tfmoe.data.pipeline`).
"""

import tensorflow as tf

from tfmoe.data import pipeline


def token_ids(tokenizer, text):
    """`tf.string [batch]` -> int32 ragged ids `[batch, (tokens)]` (any input is answered).

    The tokenizer takes empty strings, whitespace, invalid UTF-8 (-> `[UNK]`) and
    very long strings; an empty batch gives an empty ragged tensor.
    """
    return tf.cast(tokenizer(tf.reshape(text, [-1])), tf.int32)


def pack(ids, length, pad_id, prefix=(), suffix=(), keep="first"):
    """`prefix + body + suffix` padded to `[batch, length]`, with the body truncated to fit.

    Args:
      ids: int32 ragged `[batch, (tokens)]`.
      length: static output width.
      pad_id: id of the padding.
      prefix, suffix: ids put before / after every row.
      keep: "first" or "last" body tokens when truncating.

    Returns:
      `(token_ids int32 [batch, length], padding_mask bool [batch, length],
      lengths int32 [batch])`.
    """
    room = length - len(prefix) - len(suffix)
    if room < 1:
        raise ValueError(f"`sequence_length` ({length}) leaves no room for text tokens.")
    ids = ids[:, :room] if keep == "first" else ids[:, -room:]
    packed, lengths = pipeline.pad_rows(pipeline.add_ids(ids, prefix, suffix), length, pad_id)
    return packed, tf.sequence_mask(lengths, length), lengths


def ids_until_stop(ids, stop_id, pad_id):
    """Replaces the first `stop_id` of each row `[batch, n]` and everything after it by `pad_id`."""
    is_stop = tf.cast(tf.equal(ids, stop_id), tf.int32)
    ended = tf.cumsum(is_stop, axis=1) > 0
    return tf.where(ended, tf.constant(pad_id, ids.dtype), ids)
