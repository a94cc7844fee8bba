"""Pre-norm T5 transformer block shared by encoders, decoders and decoder-only LMs."""

import keras

from tfmoe.layers.attention import T5Attention
from tfmoe.layers.dense_feed_forward import DenseFeedForward
from tfmoe.layers.moe_feed_forward import (
    MOE_OPTIONS,
    MoeFeedForward,
    SwitchFeedForward,
    Top2FeedForward,
)
from tfmoe.layers.rms_norm import RMSNorm

# The MoE layer class of each `top_k` (other values: the generic `MoeFeedForward`).
_MOE_CLASSES = {1: SwitchFeedForward, 2: Top2FeedForward}


@keras.saving.register_keras_serializable(package="tfmoe")
class TransformerBlock(keras.layers.Layer):
    """One T5 v1.0 / Switch Transformer layer: self-attention, [cross-attention], FFN.

    Each sublayer is `x + dropout(sublayer(rms_norm(x)))`. The feed-forward network is a
    `DenseFeedForward` (`num_experts=0`) or an MoE layer: `SwitchFeedForward`
    (`top_k=1`), `Top2FeedForward` (`top_k=2`), `MoeFeedForward` (other `top_k`).

    Args:
      num_heads: attention heads.
      key_value_dim: size of each head.
      intermediate_dim: feed-forward (or per-expert) hidden size.
      use_cross_attention: add encoder-decoder attention (decoder blocks of seq2seq models).
      num_experts: 0 (dense) or the number of experts.
      top_k: experts per token when sparse (1: Switch, 2: GShard / GLaM).
      activation, gated: feed-forward activation and gated-linear-unit variant.
      dropout: residual, attention-probability and feed-forward hidden dropout (the MoE
        layers get `dropout=0`: the residual dropout is the block's).
      expert_dropout: hidden dropout inside experts (defaults to `dropout`).
      layer_norm_epsilon: RMS norm epsilon.
      init_scale: variance scale of every kernel initializer of the block (attention,
        dense feed-forward, experts and router: one rule for the whole model).
      moe_options: MoE layer options, any of `tfmoe.layers.moe_feed_forward.MOE_OPTIONS`
        (capacity factors, loss weights, ...).
      metrics_name: name of the MoE layer's routing metrics (default: the feed-forward
        layer's name); stacks make it unique per model.

    Call arguments:
      hidden_states: `[batch, seq, hidden]`.
      self_attention_bias: additive bias `[batch or 1, heads, seq, key_length]`
        (relative position bias + causal/padding mask), shared by the stack.
      encoder_output: `[batch, source_seq, hidden]` for cross-attention.
      cross_attention_bias: additive bias `[batch, 1, 1, source_seq]`.
      padding_mask: `[batch, seq]`, true for real tokens; padding is never routed.
      self_attention_cache: `[batch, 2, max_length, heads, key_value_dim]`; written at
        `cache_update_index`.
      cache_update_index: int scalar.
      cross_attention_cache: precomputed encoder keys/values
        `[batch, 2, source_seq, heads, key_value_dim]` (then `encoder_output` is unused).
      training: dropout / capacity-factor switch.

    Returns:
      `[batch, seq, hidden]`, or `(output, self_attention_cache)` when a cache is given.

    Sublayers (Hugging Face `*.block.{i}.layer.*` names in brackets):
      `self_attention_layer_norm` [`layer.0.layer_norm`], `self_attention`
      [`layer.0.SelfAttention`], `cross_attention_layer_norm` [`layer.1.layer_norm`],
      `cross_attention` [`layer.1.EncDecAttention`], `feed_forward_layer_norm`
      [`layer.-1.layer_norm`], `feed_forward` [`layer.-1.mlp`].
    """

    def __init__(
        self,
        num_heads,
        key_value_dim,
        intermediate_dim,
        *,
        use_cross_attention=False,
        num_experts=0,
        top_k=1,
        activation="relu",
        gated=False,
        dropout=0.0,
        expert_dropout=None,
        layer_norm_epsilon=1e-6,
        init_scale=1.0,
        moe_options=None,
        metrics_name=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        if int(num_experts) < 0:
            raise ValueError(f"`num_experts` must be >= 0, got {num_experts}.")
        if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
            raise ValueError(f"`top_k` must be an integer >= 1, got {top_k!r}.")
        unknown = sorted(set(moe_options or {}) - set(MOE_OPTIONS))
        if unknown:
            raise ValueError(f"Unknown `moe_options` {unknown}; valid: {list(MOE_OPTIONS)}.")
        self.num_heads = int(num_heads)
        self.key_value_dim = int(key_value_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.use_cross_attention = bool(use_cross_attention)
        self.num_experts = int(num_experts)
        self.top_k = int(top_k)
        self.activation = activation
        self.gated = bool(gated)
        self.dropout = float(dropout)
        self.expert_dropout = None if expert_dropout is None else float(expert_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.init_scale = float(init_scale)
        self.moe_options = dict(moe_options or {})
        self.metrics_name = metrics_name

        policy = self.dtype_policy
        self.self_attention_layer_norm = RMSNorm(
            self.layer_norm_epsilon, dtype=policy, name="self_attention_layer_norm"
        )
        self.self_attention = T5Attention(
            self.num_heads,
            self.key_value_dim,
            dropout=self.dropout,
            init_scale=self.init_scale,
            dtype=policy,
            name="self_attention",
        )
        if self.use_cross_attention:
            self.cross_attention_layer_norm = RMSNorm(
                self.layer_norm_epsilon, dtype=policy, name="cross_attention_layer_norm"
            )
            self.cross_attention = T5Attention(
                self.num_heads,
                self.key_value_dim,
                dropout=self.dropout,
                init_scale=self.init_scale,
                dtype=policy,
                name="cross_attention",
            )
        self.feed_forward_layer_norm = RMSNorm(
            self.layer_norm_epsilon, dtype=policy, name="feed_forward_layer_norm"
        )
        hidden_dropout = self.dropout if self.expert_dropout is None else self.expert_dropout
        if self.num_experts == 0:
            self.feed_forward = DenseFeedForward(
                self.intermediate_dim,
                activation=self.activation,
                gated=self.gated,
                dropout=hidden_dropout,
                init_scale=self.init_scale,
                dtype=policy,
                name="feed_forward",
            )
        else:
            moe_class = _MOE_CLASSES.get(self.top_k, MoeFeedForward)
            self.feed_forward = moe_class(
                self.num_experts,
                self.intermediate_dim,
                top_k=self.top_k,
                activation=self.activation,
                gated=self.gated,
                dropout=0.0,
                expert_dropout=hidden_dropout,
                init_scale=self.init_scale,
                metrics_name=self.metrics_name,
                dtype=policy,
                name="feed_forward",
                **self.moe_options,
            )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)

    @property
    def is_sparse(self):
        """Whether the feed-forward network is a Mixture-of-Experts layer."""
        return self.num_experts > 0

    def build(self, input_shape):
        shape = (None, None, int(input_shape[-1]))
        sublayers = [
            self.self_attention_layer_norm,
            self.self_attention,
            self.feed_forward_layer_norm,
            self.feed_forward,
        ]
        if self.use_cross_attention:
            sublayers += [self.cross_attention_layer_norm, self.cross_attention]
        for layer in sublayers:
            if not layer.built:
                layer.build(shape)
        self.built = True

    def call(
        self,
        hidden_states,
        self_attention_bias=None,
        encoder_output=None,
        cross_attention_bias=None,
        padding_mask=None,
        self_attention_cache=None,
        cache_update_index=None,
        cross_attention_cache=None,
        training=None,
    ):
        x = hidden_states
        normed = self.self_attention_layer_norm(x)
        if self_attention_cache is None:
            attended = self.self_attention(
                normed, attention_bias=self_attention_bias, training=training
            )
        else:
            attended, self_attention_cache = self.self_attention(
                normed,
                attention_bias=self_attention_bias,
                cache=self_attention_cache,
                cache_update_index=cache_update_index,
                training=training,
            )
        x = x + self.dropout_layer(attended, training=training)

        if self.use_cross_attention:
            if encoder_output is None and cross_attention_cache is None:
                raise ValueError(
                    "A cross-attention block needs `encoder_output` or `cross_attention_cache`."
                )
            normed = self.cross_attention_layer_norm(x)
            if cross_attention_cache is None:
                attended = self.cross_attention(
                    normed,
                    key_value_states=encoder_output,
                    attention_bias=cross_attention_bias,
                    training=training,
                )
            else:
                attended, _ = self.cross_attention(
                    normed,
                    attention_bias=cross_attention_bias,
                    cache=cross_attention_cache,
                    training=training,
                )
            x = x + self.dropout_layer(attended, training=training)

        normed = self.feed_forward_layer_norm(x)
        x = x + self.dropout_layer(
            self.feed_forward(normed, padding_mask=padding_mask, training=training),
            training=training,
        )
        if self_attention_cache is not None:
            return x, self_attention_cache
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            key_value_dim=self.key_value_dim,
            intermediate_dim=self.intermediate_dim,
            use_cross_attention=self.use_cross_attention,
            num_experts=self.num_experts,
            top_k=self.top_k,
            activation=keras.activations.serialize(keras.activations.get(self.activation)),
            gated=self.gated,
            dropout=self.dropout,
            expert_dropout=self.expert_dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            init_scale=self.init_scale,
            moe_options=self.moe_options,
            metrics_name=self.metrics_name,
        )
        return config
