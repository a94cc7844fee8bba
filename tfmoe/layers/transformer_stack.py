"""A stack of T5 transformer blocks with a shared relative position bias and a final norm."""

import keras
import numpy as np
from keras import ops

from tfmoe.layers.relative_position_bias import RelativePositionBias
from tfmoe.layers.rms_norm import RMSNorm
from tfmoe.layers.transformer_block import TransformerBlock

# Additive bias of masked attention scores: the float32 minimum, as Hugging Face uses,
# so that even fully masked rows (padding queries) give the same (uniform) probabilities.
MASK_VALUE = float(np.finfo(np.float32).min)


def is_sparse_layer(index, sparse_step):
    """Whether layer `index` (0-based) of a stack holds an MoE feed-forward.

    The rule of Hugging Face `SwitchTransformersStack` (and the released checkpoints):
    `sparse_step == 0` -> no sparse layer; `sparse_step == 1` -> every layer;
    otherwise the layers with `index % sparse_step == 1` (step 2: layers 1, 3, 5, ...).
    """
    if sparse_step < 0:
        raise ValueError(f"`sparse_step` must be >= 0, got {sparse_step}.")
    if sparse_step == 0:
        return False
    return sparse_step == 1 or index % sparse_step == 1


def routing_priority(priority, top_k, causal):
    """The MoE routing priority of a stack: `priority`, or by default `"token"` for
    causal stacks and `"position"` (GShard) otherwise.

    Raises:
      ValueError: a priority under which a causal stack's routing would depend on later
        positions (`"probability"`, or `"position"` with `top_k > 1`).
    """
    if priority is None:
        return "token" if causal else "position"
    if causal and (priority == "probability" or (priority == "position" and top_k > 1)):
        raise ValueError(
            f"`priority={priority!r}` with top-{top_k} routing lets a token's routing depend "
            "on later positions, which a causal stack must not; use 'token'."
        )
    return priority


def mask_to_bias(mask):
    """bool mask (true = attend) -> float32 additive bias (0 or `MASK_VALUE`)."""
    return ops.where(ops.cast(mask, "bool"), 0.0, MASK_VALUE)


@keras.saving.register_keras_serializable(package="tfmoe")
class TransformerStack(keras.layers.Layer):
    """Encoder, decoder or decoder-only stack of `TransformerBlock`s (T5 v1.0 layout).

    `dropout(x) -> blocks -> final RMS norm -> dropout`, on already embedded tokens.
    The relative position bias (bidirectional unless `causal`) is computed once and
    shared by every block, as in T5 where only the first layer owns the table.
    Block `i` holds an MoE feed-forward when `num_experts > 0` and
    `is_sparse_layer(i, sparse_step)` (Hugging Face rule: `i % sparse_step == 1`, or
    every layer for `sparse_step == 1`).

    Args:
      num_layers: number of blocks.
      num_heads, key_value_dim, intermediate_dim: block sizes.
      causal: causal self-attention and unidirectional position buckets (decoders).
      use_cross_attention: encoder-decoder attention in every block.
      num_experts: experts per sparse layer, 0 for a dense stack.
      sparse_step: see above.
      top_k: experts per token in the sparse layers (1: Switch, 2: GShard / GLaM).
      activation, gated, dropout, expert_dropout, layer_norm_epsilon, init_scale,
        moe_options: passed to the blocks. The MoE routing `priority` defaults to
        `"token"` in causal stacks (causal for any k) and `"position"` (GShard)
        otherwise; a causal stack refuses priorities that would let a token's routing
        depend on later positions.
      relative_attention_num_buckets, relative_attention_max_distance: position buckets.
      relative_attention_initializer: initializer of the position bias table.
      router_ignore_padding_tokens: keep padding out of the routers (default). False
        routes padding like any token, as Hugging Face does by default (same outputs at
        real positions when no token is dropped; differs only at padded positions).

    Call arguments:
      hidden_states: embedded tokens `[batch, seq, hidden]`.
      padding_mask: `[batch, seq]` (true = real token). Masks attention keys (full
        forward) and keeps padding out of the routers. With a cache only the routers
        use it: attention is causal over the cache (prompts are right-padded).
      encoder_output: `[batch, source_seq, hidden]` (cross-attention stacks).
      encoder_padding_mask: `[batch, source_seq]`.
      cache: `[batch, num_layers, 2, max_length, heads, key_value_dim]` self-attention
        keys/values; the new ones are written at `cache_update_index` (queries sit at
        positions `cache_update_index ..`).
      cache_update_index: int scalar.
      cross_cache: output of `compute_cross_cache` (replaces `encoder_output`).
      training: dropout / capacity-factor switch.

    Returns:
      `[batch, seq, hidden]`, or `(output, cache)` when `cache` is given.

    Sublayers: `relative_position_bias`, `blocks` (list of `TransformerBlock` named
    `block_{i}`, each with a sublayer `feed_forward`), `final_layer_norm`. The routing
    metrics of block `i`'s MoE layer are named `{stack name}_block_{i}_feed_forward`,
    unique in a model (weights keep their layer paths, `{stack}/block_{i}/feed_forward/...`).
    """

    def __init__(
        self,
        num_layers,
        num_heads,
        key_value_dim,
        intermediate_dim,
        *,
        causal=False,
        use_cross_attention=False,
        num_experts=0,
        sparse_step=2,
        top_k=1,
        activation="relu",
        gated=False,
        dropout=0.0,
        expert_dropout=None,
        layer_norm_epsilon=1e-6,
        init_scale=1.0,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        relative_attention_initializer="zeros",
        router_ignore_padding_tokens=True,
        moe_options=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"`num_layers` must be >= 1, got {num_layers}.")
        if int(sparse_step) < 0:
            raise ValueError(f"`sparse_step` must be >= 0, got {sparse_step}.")
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.key_value_dim = int(key_value_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.causal = bool(causal)
        self.use_cross_attention = bool(use_cross_attention)
        self.num_experts = int(num_experts)
        self.sparse_step = int(sparse_step)
        self.top_k = int(top_k)
        self.activation = activation
        self.gated = bool(gated)
        self.dropout = float(dropout)
        self.expert_dropout = None if expert_dropout is None else float(expert_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.init_scale = float(init_scale)
        self.relative_attention_num_buckets = int(relative_attention_num_buckets)
        self.relative_attention_max_distance = int(relative_attention_max_distance)
        self.relative_attention_initializer = keras.initializers.get(relative_attention_initializer)
        self.router_ignore_padding_tokens = bool(router_ignore_padding_tokens)
        self.moe_options = dict(moe_options or {})
        block_moe_options = dict(self.moe_options)
        block_moe_options["priority"] = routing_priority(
            self.moe_options.get("priority"), self.top_k, self.causal
        )

        policy = self.dtype_policy
        self.relative_position_bias = RelativePositionBias(
            self.num_heads,
            self.relative_attention_num_buckets,
            self.relative_attention_max_distance,
            bidirectional=not self.causal,
            embeddings_initializer=self.relative_attention_initializer,
            dtype=policy,
            name="relative_position_bias",
        )
        self.blocks = [
            TransformerBlock(
                self.num_heads,
                self.key_value_dim,
                self.intermediate_dim,
                use_cross_attention=self.use_cross_attention,
                num_experts=self.num_experts if is_sparse_layer(i, self.sparse_step) else 0,
                top_k=self.top_k,
                activation=self.activation,
                gated=self.gated,
                dropout=self.dropout,
                expert_dropout=self.expert_dropout,
                layer_norm_epsilon=self.layer_norm_epsilon,
                init_scale=self.init_scale,
                moe_options=block_moe_options,
                metrics_name=f"{self.name}_block_{i}_feed_forward",
                dtype=policy,
                name=f"block_{i}",
            )
            for i in range(self.num_layers)
        ]
        self.final_layer_norm = RMSNorm(
            self.layer_norm_epsilon, dtype=policy, name="final_layer_norm"
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)

    @property
    def sparse_layers(self):
        """Indices of the blocks holding an MoE feed-forward."""
        return [i for i, block in enumerate(self.blocks) if block.is_sparse]

    def build(self, input_shape):
        shape = (None, None, int(input_shape[-1]))
        if not self.relative_position_bias.built:
            self.relative_position_bias.build()
        for block in self.blocks:
            if not block.built:
                block.build(shape)
        if not self.final_layer_norm.built:
            self.final_layer_norm.build(shape)
        self.built = True

    def compute_cross_cache(self, encoder_output):
        """Every block's cross-attention keys/values of `encoder_output`.

        Returns `[batch, num_layers, 2, source_seq, heads, key_value_dim]`.
        """
        if not self.use_cross_attention:
            raise ValueError("This stack has no cross-attention.")
        return ops.stack(
            [block.cross_attention.project_key_value(encoder_output) for block in self.blocks],
            axis=1,
        )

    def _self_attention_bias(self, query_length, key_length, padding_mask, query_offset, cached):
        query_position = ops.arange(query_length, dtype="int32") + ops.cast(query_offset, "int32")
        key_position = ops.arange(key_length, dtype="int32")
        bias = self.relative_position_bias(query_position, key_position)
        mask = None
        if self.causal:
            mask = (key_position[None, :] <= query_position[:, None])[None, None]
        if padding_mask is not None and not cached:
            key_mask = ops.cast(padding_mask, "bool")[:, None, None, :]
            mask = key_mask if mask is None else ops.logical_and(mask, key_mask)
        return bias if mask is None else bias + mask_to_bias(mask)

    def call(
        self,
        hidden_states,
        padding_mask=None,
        encoder_output=None,
        encoder_padding_mask=None,
        cache=None,
        cache_update_index=None,
        cross_cache=None,
        training=None,
    ):
        cached = cache is not None
        if cached and cache_update_index is None:
            raise ValueError("`cache` needs a `cache_update_index`.")
        if self.use_cross_attention and encoder_output is None and cross_cache is None:
            raise ValueError("This stack needs `encoder_output` or `cross_cache`.")
        query_length = ops.shape(hidden_states)[1]
        key_length = ops.shape(cache)[3] if cached else query_length
        self_bias = self._self_attention_bias(
            query_length, key_length, padding_mask, cache_update_index if cached else 0, cached
        )
        cross_bias = None
        if self.use_cross_attention and encoder_padding_mask is not None:
            cross_bias = mask_to_bias(encoder_padding_mask)[:, None, None, :]

        routing_mask = padding_mask if self.router_ignore_padding_tokens else None
        x = self.dropout_layer(hidden_states, training=training)
        new_caches = []
        for i, block in enumerate(self.blocks):
            kwargs = dict(
                self_attention_bias=self_bias,
                cross_attention_bias=cross_bias,
                padding_mask=routing_mask,
                training=training,
            )
            if self.use_cross_attention:
                if cross_cache is None:
                    kwargs["encoder_output"] = encoder_output
                else:
                    kwargs["cross_attention_cache"] = cross_cache[:, i]
            if cached:
                x, layer_cache = block(
                    x,
                    self_attention_cache=cache[:, i],
                    cache_update_index=cache_update_index,
                    **kwargs,
                )
                new_caches.append(layer_cache)
            else:
                x = block(x, **kwargs)
        x = self.dropout_layer(self.final_layer_norm(x), training=training)
        if cached:
            return x, ops.stack(new_caches, axis=1)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            key_value_dim=self.key_value_dim,
            intermediate_dim=self.intermediate_dim,
            causal=self.causal,
            use_cross_attention=self.use_cross_attention,
            num_experts=self.num_experts,
            sparse_step=self.sparse_step,
            top_k=self.top_k,
            activation=keras.activations.serialize(keras.activations.get(self.activation)),
            gated=self.gated,
            dropout=self.dropout,
            expert_dropout=self.expert_dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            init_scale=self.init_scale,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            relative_attention_max_distance=self.relative_attention_max_distance,
            relative_attention_initializer=keras.initializers.serialize(
                self.relative_attention_initializer
            ),
            router_ignore_padding_tokens=self.router_ignore_padding_tokens,
            moe_options=self.moe_options,
        )
        return config
