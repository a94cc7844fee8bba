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

    Gathers the label's logit and subtracts the log-sum-exp over the vocabulary, so no
    second `[batch, seq, vocab]` tensor (softmax or gradient) is made besides `logits`.

    Args:
      logits: `[batch, seq, vocab]`; position `t` predicts `labels[:, t]`.
      labels: int `[batch, seq]`.
      label_mask: bool `[batch, seq]`, true where the label counts.

    Returns:
      `(log_likelihood float32 [batch], num_tokens int32 [batch])`.
    """
    logits = tf.cast(logits, tf.float32)
    label_logits = tf.gather(logits, tf.cast(labels, tf.int32), batch_dims=2)  # [batch, seq]
    token_log_probs = label_logits - tf.reduce_logsumexp(logits, axis=-1)
    mask = tf.cast(label_mask, tf.float32)
    return (
        tf.reduce_sum(token_log_probs * mask, axis=1),
        tf.reduce_sum(tf.cast(label_mask, tf.int32), axis=1),
    )
