"""The architecture arguments shared by every tfmoe model, and the layers they build.

`SwitchArchitecture` is the one place where the arguments of the model zoo (sizes,
MoE options, special ids) have their defaults, are checked and normalised, and
turn into layers (`ReversibleEmbedding` token embedding, `TransformerStack`s,
tied-embedding logits). `SwitchBackbone` builds its layers from it and its tasks
(`SwitchCausalLM`, `SwitchSeq2SeqLM`, `SwitchTextClassifier`) their output
projection.
"""

import inspect

import keras
from keras import ops

from tfmoe.layers.feed_forward_factory import MOE_OPTION_NAMES, ROUTINGS
from tfmoe.layers.moe_feed_forward import (DEFAULT_GROUP_SIZE, DEFAULT_INIT_SCALE,
                                           DEFAULT_MIN_CAPACITY)
from tfmoe.layers.transformer_stack import TransformerStack


class SwitchArchitecture:
    """Checked architecture arguments of a tfmoe model.

    Args:
      vocabulary_size: number of token ids.
      hidden_dim: model width (T5 `d_model`).
      num_heads: attention heads.
      intermediate_dim: feed-forward hidden size, per expert in sparse layers (`d_ff`).
      num_layers: number of (encoder, or decoder-only) layers.
      key_value_dim: size of each head (T5 `d_kv`); defaults to `hidden_dim // num_heads`.
      activation: feed-forward activation ("relu", "gelu", ...).
      gated: gated-linear-unit feed-forward networks and experts (GEGLU with "gelu").
      dropout: dropout rate (embeddings, residual branches, attention probabilities,
        feed-forward hidden units, final norm output).
      layer_norm_epsilon: RMS norm epsilon.
      relative_attention_num_buckets, relative_attention_max_distance: T5 position
        buckets (32, 128).
      tie_embeddings: share the input embedding with the output projection (then
        the final hidden states are scaled by `hidden_dim ** -0.5` first, as in T5
        v1.0 / Hugging Face `tie_word_embeddings=True`).
      num_experts: experts per sparse layer; 0 gives the dense baseline.
      sparse_step: sparse layer frequency (`tfmoe.layers.is_sparse_layer`: 1 = every
        layer, 2 = layers 1, 3, 5, ..., 0 = none).
      routing: "top1" (`SwitchFeedForward`) or "top2" (`Top2FeedForward`).
      capacity_factor, eval_capacity_factor, jitter_noise, load_balance_weight,
        z_loss_weight, router_dtype, dispatch, group_size, min_capacity: MoE layer
        options (`tfmoe.layers.MoeFeedForward`).
      priority: MoE routing priority; None: `"token"` in decoders (causal for top-2
        too), `"position"` (GShard) in encoders.
      init_scale: variance scale of every kernel initializer (attention, dense
        feed-forward, experts, router).
      routing_metrics: log each MoE layer's routing metrics in `fit`/`evaluate`.
      expert_dropout: dropout on the experts' hidden units (defaults to `dropout`).
      router_ignore_padding_tokens: keep padding tokens out of the routers (default).
      pad_token_id, eos_token_id: special ids (T5: 0 and 1).

    Raises:
      ValueError: naming the argument, for sizes below 1, a `hidden_dim` not divisible
        by `num_heads` without `key_value_dim`, negative `num_experts` / `sparse_step`,
        an unknown `routing` or a `dropout` outside [0, 1).
    """

    REQUIRED = ("vocabulary_size", "hidden_dim", "num_heads", "intermediate_dim",
                "num_layers")

    def __init__(self, vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers, *,
                 key_value_dim=None, activation="relu", gated=False, dropout=0.1,
                 layer_norm_epsilon=1e-6, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, tie_embeddings=True, num_experts=0,
                 sparse_step=2, routing="top1", capacity_factor=1.25,
                 eval_capacity_factor=2.0, jitter_noise=0.0, load_balance_weight=0.01,
                 z_loss_weight=0.0, router_dtype="float32", init_scale=DEFAULT_INIT_SCALE,
                 dispatch="auto", routing_metrics=True, group_size=DEFAULT_GROUP_SIZE,
                 min_capacity=DEFAULT_MIN_CAPACITY, priority=None, expert_dropout=None,
                 router_ignore_padding_tokens=True, pad_token_id=0, eos_token_id=1):
        for name, value in (("vocabulary_size", vocabulary_size), ("hidden_dim", hidden_dim),
                            ("num_heads", num_heads), ("intermediate_dim", intermediate_dim),
                            ("num_layers", num_layers)):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        if key_value_dim is None:
            if hidden_dim % num_heads:
                raise ValueError(
                    f"`hidden_dim` ({hidden_dim}) is not divisible by `num_heads` "
                    f"({num_heads}): pass `key_value_dim`.")
            key_value_dim = hidden_dim // num_heads
        if int(num_experts) < 0:
            raise ValueError(f"`num_experts` must be >= 0, got {num_experts}.")
        if int(sparse_step) < 0:
            raise ValueError(f"`sparse_step` must be >= 0, got {sparse_step}.")
        if routing not in ROUTINGS:
            raise ValueError(f"`routing` must be one of {ROUTINGS}, got {routing!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.num_layers = int(num_layers)
        self.key_value_dim = int(key_value_dim)
        self.activation = activation
        self.gated = bool(gated)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.relative_attention_num_buckets = int(relative_attention_num_buckets)
        self.relative_attention_max_distance = int(relative_attention_max_distance)
        self.tie_embeddings = bool(tie_embeddings)
        self.num_experts = int(num_experts)
        self.sparse_step = int(sparse_step)
        self.routing = routing
        self.capacity_factor = float(capacity_factor)
        self.eval_capacity_factor = float(eval_capacity_factor)
        self.jitter_noise = float(jitter_noise)
        self.load_balance_weight = float(load_balance_weight)
        self.z_loss_weight = float(z_loss_weight)
        self.router_dtype = router_dtype
        self.init_scale = float(init_scale)
        self.dispatch = dispatch
        self.routing_metrics = bool(routing_metrics)
        self.group_size = int(group_size)
        self.min_capacity = int(min_capacity)
        self.priority = priority
        self.expert_dropout = None if expert_dropout is None else float(expert_dropout)
        self.router_ignore_padding_tokens = bool(router_ignore_padding_tokens)
        self.pad_token_id = int(pad_token_id)
        self.eos_token_id = int(eos_token_id)

    # Argument names and values ---------------------------------------------------------

    @classmethod
    def argument_defaults(cls):
        """`{name: default}` of the optional arguments (the required ones have none)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params if p.default is not p.empty}

    @classmethod
    def argument_names(cls):
        """Names of all architecture arguments (required first)."""
        return list(cls.REQUIRED) + list(cls.argument_defaults())

    @classmethod
    def split_arguments(cls, kwargs):
        """`(architecture arguments, other kwargs)` of a constructor's `**kwargs`."""
        names = set(cls.argument_names())
        return ({k: v for k, v in kwargs.items() if k in names},
                {k: v for k, v in kwargs.items() if k not in names})

    def values(self):
        """`{name: normalised value}` of every argument (activation as given)."""
        return {name: getattr(self, name) for name in self.argument_names()}

    def get_config(self):
        """JSON-serialisable `values()` (the activation serialised by name)."""
        config = self.values()
        config["activation"] = keras.activations.serialize(
            keras.activations.get(self.activation))
        return config

    @property
    def moe_options(self):
        """The MoE layer options (`tfmoe.layers.feed_forward_factory.MOE_OPTION_NAMES`)."""
        return {name: getattr(self, name) for name in MOE_OPTION_NAMES}

    # Layers ----------------------------------------------------------------------------

    def make_token_embedding(self, tie_weights, dtype=None, name="token_embedding"):
        """Token embedding `[batch, seq]` -> `[batch, seq, hidden]`, N(0, 1) init.

        `tie_weights=False` adds a separate output matrix (`reverse_embeddings`).
        """
        return keras.layers.ReversibleEmbedding(
            self.vocabulary_size, self.hidden_dim, tie_weights=tie_weights,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            dtype=dtype, name=name)

    def make_stack(self, name, num_layers, sparse_step, causal, use_cross_attention,
                   dtype=None):
        """A `TransformerStack` of `num_layers` blocks with these arguments."""
        return TransformerStack(
            num_layers, self.num_heads, self.key_value_dim, self.intermediate_dim,
            causal=causal, use_cross_attention=use_cross_attention,
            num_experts=self.num_experts, sparse_step=sparse_step, routing=self.routing,
            activation=self.activation, gated=self.gated, dropout=self.dropout,
            expert_dropout=self.expert_dropout, layer_norm_epsilon=self.layer_norm_epsilon,
            init_scale=self.init_scale,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            relative_attention_max_distance=self.relative_attention_max_distance,
            relative_attention_initializer=keras.initializers.RandomNormal(
                stddev=self.hidden_dim ** -0.5),
            router_ignore_padding_tokens=self.router_ignore_padding_tokens,
            moe_options=self.moe_options, dtype=dtype, name=name)

    def logits(self, token_embedding, hidden_states):
        """Final hidden states `[..., hidden]` -> float32 logits `[..., vocabulary]`.

        Tied embeddings scale the hidden states by `hidden_dim ** -0.5` first (T5 v1.0).
        """
        if self.tie_embeddings:
            hidden_states = hidden_states * ops.cast(self.hidden_dim ** -0.5,
                                                     hidden_states.dtype)
        return ops.cast(token_embedding(hidden_states, reverse=True), "float32")
