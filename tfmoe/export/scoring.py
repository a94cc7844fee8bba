"""Pure tensor helpers of the serving signatures (pooling, log-likelihood)."""

import tensorflow as tf


def masked_mean(hidden, padding_mask):
    """Mean of `hidden` `[batch, seq, dim]` over real positions -> float32 `[batch, dim]`.

    Rows without real tokens give zeros (never NaN).
    """
    hidden = tf.cast(hidden, tf.float32)
    weights = tf.cast(padding_mask, tf.float32)[:, :, None]
    return tf.reduce_sum(hidden * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


def sequence_log_likelihood(logits, labels, label_mask):
    """Summed log-probability of `labels` under `logits`.

    Args:
      logits: `[batch, seq, vocab]`; position `t` predicts `labels[:, t]`.
      labels: int `[batch, seq]`.
      label_mask: bool `[batch, seq]`, true where the label counts.

    Returns:
      `(log_likelihood float32 [batch], num_tokens int32 [batch])`.
    """
    token_log_probs = -tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
    mask = tf.cast(label_mask, tf.float32)
    return (tf.reduce_sum(token_log_probs * mask, axis=1),
            tf.reduce_sum(tf.cast(label_mask, tf.int32), axis=1))
