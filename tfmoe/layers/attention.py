"""T5 multi-head attention (no 1/sqrt(d) scaling, no biases) with a key/value cache."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmoe")
class T5Attention(keras.layers.Layer):
    """Multi-head dot-product attention as in T5 / Switch Transformers.

    Scores are `q @ k^T + bias` without the `1/sqrt(head_dim)` factor (folded into the
    query initialization, Mesh TensorFlow style). The additive `attention_bias` carries
    the relative position bias and the masks; scores, bias and softmax are float32.

    Args:
      num_heads: number of heads.
      key_value_dim: size of each head (T5 `d_kv`; need not be `hidden / heads`).
      dropout: dropout rate on the attention probabilities.
      init_scale: variance scale of the Mesh TensorFlow initializers (normal with std
        `sqrt(init_scale)` times `q`: `(hidden * key_value_dim) ** -0.5`, `k`, `v`:
        `hidden ** -0.5`, `o`: `(num_heads * key_value_dim) ** -0.5`).

    Call arguments:
      hidden_states: `[batch, query_length, hidden]` queries (and keys/values for
        self-attention).
      key_value_states: optional `[batch, key_length, hidden]` for cross-attention.
      attention_bias: optional float additive bias broadcastable to
        `[batch, num_heads, query_length, key_length]` (0 = attend, -1e9 = masked).
      cache: optional `[batch, 2, cache_length, num_heads, key_value_dim]` keys and
        values. With `cache_update_index` the new keys/values are written into it at
        that index and attention runs over the whole cache; without it the cache is
        used as is (precomputed cross-attention keys/values) and no keys/values are
        computed from the inputs.
      cache_update_index: int scalar, where to write the new keys/values.
      training: dropout switch.

    Returns:
      `[batch, query_length, hidden]`, or `(output, cache)` when `cache` is given.

    Weights (kernels `[in, out]`, i.e. transposed PyTorch `Linear.weight`):
      `q`, `k`, `v` `[hidden, heads * key_value_dim]`, `o` `[heads * key_value_dim, hidden]`.
    """

    def __init__(self, num_heads, key_value_dim, dropout=0.0, init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) < 1:
            raise ValueError(f"`num_heads` must be >= 1, got {num_heads}.")
        if int(key_value_dim) < 1:
            raise ValueError(f"`key_value_dim` must be >= 1, got {key_value_dim}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        self.num_heads = int(num_heads)
        self.key_value_dim = int(key_value_dim)
        self.inner_dim = self.num_heads * self.key_value_dim
        self.dropout = float(dropout)
        if not init_scale > 0:
            raise ValueError(f"`init_scale` must be > 0, got {init_scale}.")
        self.init_scale = float(init_scale)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        hidden = int(input_shape[-1])
        scale = self.init_scale**0.5

        def normal(stddev):
            return keras.initializers.RandomNormal(stddev=scale * stddev)

        inner = self.inner_dim
        self.q = self.add_weight(
            name="q",
            shape=(hidden, inner),
            initializer=normal((hidden * self.key_value_dim) ** -0.5),
        )
        self.k = self.add_weight(name="k", shape=(hidden, inner), initializer=normal(hidden**-0.5))
        self.v = self.add_weight(name="v", shape=(hidden, inner), initializer=normal(hidden**-0.5))
        self.o = self.add_weight(name="o", shape=(inner, hidden), initializer=normal(inner**-0.5))
        self.built = True

    def _heads(self, x):
        """`[batch, length, heads * head_dim]` -> `[batch, length, heads, head_dim]`."""
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self.num_heads, self.key_value_dim))

    def project_key_value(self, states):
        """Keys and values of `states` `[batch, length, hidden]`, stacked as a cache.

        Returns `[batch, 2, length, num_heads, key_value_dim]`.
        """
        keys = self._heads(ops.matmul(states, self.k))
        values = self._heads(ops.matmul(states, self.v))
        return ops.stack([keys, values], axis=1)

    def call(
        self,
        hidden_states,
        key_value_states=None,
        attention_bias=None,
        cache=None,
        cache_update_index=None,
        training=None,
    ):
        if cache is None and cache_update_index is not None:
            raise ValueError("`cache_update_index` was given without a `cache`.")
        query = self._heads(ops.matmul(hidden_states, self.q))
        if cache is None:
            kv = self.project_key_value(
                hidden_states if key_value_states is None else key_value_states
            )
        elif cache_update_index is None:
            kv = ops.cast(cache, self.compute_dtype)
        else:
            update = self.project_key_value(
                hidden_states if key_value_states is None else key_value_states
            )
            start = [0, 0, cache_update_index, 0, 0]
            kv = ops.slice_update(ops.cast(cache, self.compute_dtype), start, update)
            cache = kv
        keys, values = kv[:, 0], kv[:, 1]

        scores = ops.einsum("bqnd,bknd->bnqk", query, keys)
        scores = ops.cast(scores, "float32")
        if attention_bias is not None:
            scores = scores + ops.cast(attention_bias, "float32")
        weights = ops.softmax(scores, axis=-1)
        weights = self.dropout_layer(ops.cast(weights, self.compute_dtype), training=training)
        outputs = ops.einsum("bnqk,bknd->bqnd", weights, values)
        shape = ops.shape(outputs)
        outputs = ops.reshape(outputs, (shape[0], shape[1], self.inner_dim))
        outputs = ops.matmul(outputs, self.o)
        if cache is not None:
            return outputs, cache
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            key_value_dim=self.key_value_dim,
            dropout=self.dropout,
            init_scale=self.init_scale,
        )
        return config
