"""The architecture arguments shared by every tfmoe model, and the layers they build.

`SwitchArchitecture` is the one place where the arguments of the model zoo (sizes,
special ids) have their defaults, are checked and normalised, and turn into layers
(`ReversibleEmbedding` token embedding, `TransformerStack`s, tied-embedding logits).
The MoE options are the layers' own (`tfmoe.layers.MOE_OPTIONS`, with
`MoeFeedForward`'s defaults), passed through by name. `SwitchBackbone` builds its layers from it and its tasks
(`SwitchCausalLM`, `SwitchSeq2SeqLM`, `SwitchTextClassifier`) their output
projection.
"""

import inspect

import keras
from keras import ops

from tfmoe.layers.moe_feed_forward import DEFAULT_INIT_SCALE, MOE_OPTIONS, moe_option_defaults
from tfmoe.layers.transformer_stack import TransformerStack


def _like_default(value, default):
    """`value` as the type of its (bool / int / float) default, so configs stay canonical."""
    for kind in (bool, int, float):
        if isinstance(default, kind):
            return kind(value)
    return value


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
      top_k: experts per token in the sparse layers: 1 (`SwitchFeedForward`), 2
        (`Top2FeedForward`) or more (`MoeFeedForward`).
      init_scale: variance scale of every kernel initializer (attention, dense
        feed-forward, experts, router).
      expert_dropout: dropout on the experts' hidden units (defaults to `dropout`).
      router_ignore_padding_tokens: keep padding tokens out of the routers (default).
      pad_token_id, eos_token_id: special ids (T5: 0 and 1).
      **moe_options: the MoE layer options (`tfmoe.layers.MOE_OPTIONS`: capacity
        factors, routing groups, loss weights, router dtype, dispatch, ...), passed to
        every MoE layer, with `MoeFeedForward`'s defaults except `priority`: None
        gives `"token"` in decoders (causal for any `top_k`) and `"position"` (GShard)
        in encoders.

    Raises:
      ValueError: naming the argument, for sizes below 1, a `hidden_dim` not divisible
        by `num_heads` without `key_value_dim`, negative `num_experts` / `sparse_step`,
        a `top_k` below 1, an unknown argument or a `dropout` outside [0, 1).
    """

    REQUIRED = ("vocabulary_size", "hidden_dim", "num_heads", "intermediate_dim", "num_layers")
    # MoE option defaults of the models that differ from the layers': the stack picks
    # the routing priority from its causality.
    MOE_DEFAULTS = {"priority": None}

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_heads,
        intermediate_dim,
        num_layers,
        *,
        key_value_dim=None,
        activation="relu",
        gated=False,
        dropout=0.1,
        layer_norm_epsilon=1e-6,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        tie_embeddings=True,
        num_experts=0,
        sparse_step=2,
        top_k=1,
        init_scale=DEFAULT_INIT_SCALE,
        expert_dropout=None,
        router_ignore_padding_tokens=True,
        pad_token_id=0,
        eos_token_id=1,
        **moe_options,
    ):
        for name, value in (
            ("vocabulary_size", vocabulary_size),
            ("hidden_dim", hidden_dim),
            ("num_heads", num_heads),
            ("intermediate_dim", intermediate_dim),
            ("num_layers", num_layers),
        ):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        if key_value_dim is None:
            if hidden_dim % num_heads:
                raise ValueError(
                    f"`hidden_dim` ({hidden_dim}) is not divisible by `num_heads` "
                    f"({num_heads}): pass `key_value_dim`."
                )
            key_value_dim = hidden_dim // num_heads
        if int(num_experts) < 0:
            raise ValueError(f"`num_experts` must be >= 0, got {num_experts}.")
        if int(sparse_step) < 0:
            raise ValueError(f"`sparse_step` must be >= 0, got {sparse_step}.")
        if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
            raise ValueError(f"`top_k` must be an integer >= 1, got {top_k!r}.")
        unknown = sorted(set(moe_options) - set(MOE_OPTIONS))
        if unknown:
            raise ValueError(f"Unknown argument(s) {unknown}; valid: {self.argument_names()}.")
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
        self.top_k = int(top_k)
        self.init_scale = float(init_scale)
        defaults = self.moe_defaults()
        for name in MOE_OPTIONS:
            value = moe_options.get(name, defaults[name])
            setattr(self, name, None if value is None else _like_default(value, defaults[name]))
        self.expert_dropout = None if expert_dropout is None else float(expert_dropout)
        self.router_ignore_padding_tokens = bool(router_ignore_padding_tokens)
        self.pad_token_id = int(pad_token_id)
        self.eos_token_id = int(eos_token_id)

    # Argument names and values ---------------------------------------------------------

    @classmethod
    def moe_defaults(cls):
        """`{name: default}` of the MoE options (`tfmoe.layers.MOE_OPTIONS`)."""
        return {**moe_option_defaults(), **cls.MOE_DEFAULTS}

    @classmethod
    def argument_defaults(cls):
        """`{name: default}` of the optional arguments (the required ones have none)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {
            **{p.name: p.default for p in params if p.default is not p.empty},
            **cls.moe_defaults(),
        }

    @classmethod
    def argument_names(cls):
        """Names of all architecture arguments (required first)."""
        return list(cls.REQUIRED) + list(cls.argument_defaults())

    @classmethod
    def split_arguments(cls, kwargs):
        """`(architecture arguments, other kwargs)` of a constructor's `**kwargs`."""
        names = set(cls.argument_names())
        return (
            {k: v for k, v in kwargs.items() if k in names},
            {k: v for k, v in kwargs.items() if k not in names},
        )

    def values(self):
        """`{name: normalised value}` of every argument (activation as given)."""
        return {name: getattr(self, name) for name in self.argument_names()}

    def get_config(self):
        """JSON-serialisable `values()` (the activation serialised by name)."""
        config = self.values()
        config["activation"] = keras.activations.serialize(keras.activations.get(self.activation))
        return config

    @property
    def moe_options(self):
        """The MoE layer options (`tfmoe.layers.MOE_OPTIONS`)."""
        return {name: getattr(self, name) for name in MOE_OPTIONS}

    # Layers ----------------------------------------------------------------------------

    def make_token_embedding(self, tie_weights, dtype=None, name="token_embedding"):
        """Token embedding `[batch, seq]` -> `[batch, seq, hidden]`, N(0, 1) init.

        `tie_weights=False` adds a separate output matrix (`reverse_embeddings`).
        """
        return keras.layers.ReversibleEmbedding(
            self.vocabulary_size,
            self.hidden_dim,
            tie_weights=tie_weights,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            dtype=dtype,
            name=name,
        )

    def make_stack(self, name, num_layers, sparse_step, causal, use_cross_attention, dtype=None):
        """A `TransformerStack` of `num_layers` blocks with these arguments."""
        return TransformerStack(
            num_layers,
            self.num_heads,
            self.key_value_dim,
            self.intermediate_dim,
            causal=causal,
            use_cross_attention=use_cross_attention,
            num_experts=self.num_experts,
            sparse_step=sparse_step,
            top_k=self.top_k,
            activation=self.activation,
            gated=self.gated,
            dropout=self.dropout,
            expert_dropout=self.expert_dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            init_scale=self.init_scale,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            relative_attention_max_distance=self.relative_attention_max_distance,
            relative_attention_initializer=keras.initializers.RandomNormal(
                stddev=self.hidden_dim**-0.5
            ),
            router_ignore_padding_tokens=self.router_ignore_padding_tokens,
            moe_options=self.moe_options,
            dtype=dtype,
            name=name,
        )

    def logits(self, token_embedding, hidden_states):
        """Final hidden states `[..., hidden]` -> float32 logits `[..., vocabulary]`.

        Tied embeddings scale the hidden states by `hidden_dim ** -0.5` first (T5 v1.0).
        """
        if self.tie_embeddings:
            hidden_states = hidden_states * ops.cast(self.hidden_dim**-0.5, hidden_states.dtype)
        return ops.cast(token_embedding(hidden_states, reverse=True), "float32")
