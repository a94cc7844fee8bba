"""T5 relative position bias: bucketed relative distances -> per-head attention bias."""

import math

import keras
from keras import ops


def relative_position_bucket(
    relative_position, bidirectional=True, num_buckets=32, max_distance=128
):
    """Maps relative positions (`key_position - query_position`) to bucket ids.

    The exact Mesh TensorFlow / T5 / Hugging Face scheme: with `bidirectional`, half of
    the buckets are for positive offsets; then half of the remaining buckets are exact
    small distances and the other half log-spaced distances up to `max_distance` (all
    larger distances share the last bucket). Without `bidirectional` (causal), positive
    offsets (the future) share bucket 0 with offset 0.

    Args:
      relative_position: int tensor of any shape.
      bidirectional: whether keys may lie after the query (encoder) or not (decoder).
      num_buckets: number of buckets.
      max_distance: distance from which all offsets share the last bucket.

    Returns:
      int32 tensor of the same shape, values in `[0, num_buckets)`.
    """
    relative_position = ops.cast(relative_position, "int32")
    buckets = ops.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + ops.cast(relative_position > 0, "int32") * num_buckets
        distance = ops.abs(relative_position)
    else:
        distance = -ops.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # Same float32 operation order as the reference implementations. The log of a zero
    # distance is never selected (`is_small`), clamp it to keep the cast well defined.
    safe = ops.cast(ops.maximum(distance, max_exact), "float32")
    log_ratio = ops.log(safe / float(max_exact)) / math.log(max_distance / max_exact)
    large = max_exact + ops.cast(log_ratio * (num_buckets - max_exact), "int32")
    large = ops.minimum(large, num_buckets - 1)
    return buckets + ops.where(is_small, distance, large)


@keras.saving.register_keras_serializable(package="tfmoe")
class RelativePositionBias(keras.layers.Layer):
    """Learned T5 relative position bias, computed once per stack and shared by its layers.

    Args:
      num_heads: number of attention heads.
      num_buckets: number of relative-position buckets (T5: 32).
      max_distance: distance from which offsets share a bucket (T5: 128).
      bidirectional: `True` for encoders, `False` for causal decoders.
      embeddings_initializer: initializer of the `[num_buckets, num_heads]` table.

    Call arguments:
      query_positions: int `[query_length]` absolute query positions (`arange(seq)`,
        or `cache_index + arange(seq)` during cached decoding).
      key_positions: int `[key_length]` absolute key positions.

    Returns:
      float32 bias `[1, num_heads, query_length, key_length]`.

    Weights:
      `embeddings` `[num_buckets, num_heads]` (Hugging Face:
      `{encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`).
    """

    def __init__(
        self,
        num_heads,
        num_buckets=32,
        max_distance=128,
        bidirectional=True,
        embeddings_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("num_heads", num_heads),
            ("num_buckets", num_buckets),
            ("max_distance", max_distance),
        ):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        if int(num_buckets) < (4 if bidirectional else 2):
            raise ValueError(f"`num_buckets` is too small: {num_buckets}.")
        self.num_heads = int(num_heads)
        self.num_buckets = int(num_buckets)
        self.max_distance = int(max_distance)
        self.bidirectional = bool(bidirectional)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_buckets, self.num_heads),
            initializer=self.embeddings_initializer,
            autocast=False,
        )
        self.built = True

    def call(self, query_positions, key_positions):
        relative = (
            ops.cast(key_positions, "int32")[None, :] - ops.cast(query_positions, "int32")[:, None]
        )
        bucket = relative_position_bucket(
            relative, self.bidirectional, self.num_buckets, self.max_distance
        )
        values = ops.take(ops.cast(self.embeddings, "float32"), bucket, axis=0)  # [q, k, h]
        return ops.expand_dims(ops.transpose(values, (2, 0, 1)), 0)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
            bidirectional=self.bidirectional,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
        )
        return config
