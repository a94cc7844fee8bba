"""Decoder-only causal language model with sparse (GLaM top-2 / Switch top-1) layers."""

import keras
from keras import ops

from tfmoe.models import generation
from tfmoe.models.presets import CAUSAL_LM
from tfmoe.models.switch_model import SwitchModel


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchDecoderLM(SwitchModel):
    """GLaM-style decoder-only LM: T5 decoder blocks without cross-attention.

    Token embedding -> `TransformerStack(causal=True)` (unidirectional relative position
    buckets, causal self-attention) -> logits. Every `sparse_step`-th feed-forward is a
    `Top2FeedForward` (`routing="top2"`, GLaM) or `SwitchFeedForward` (`"top1"`);
    `num_experts=0` gives the dense baseline with the same FLOPs per token as top-1.

    Args:
      See `tfmoe.models.SwitchModel` (all architecture arguments are shared).

    Call arguments:
      inputs: dict with `token_ids` int `[batch, seq]` and `padding_mask` `[batch, seq]`
        (true / 1 for real tokens; optional, defaults to all real).
      training: dropout and capacity-factor switch.

    Returns:
      float32 logits `[batch, seq, vocabulary_size]`; position `t` predicts token `t+1`.

    Layers: `token_embedding` (keras `ReversibleEmbedding`: `embeddings`, plus
    `reverse_embeddings` when untied), `decoder` (`TransformerStack`).
    """

    preset_kind = CAUSAL_LM

    def __init__(self, vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
                 **kwargs):
        super().__init__(vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
                         **kwargs)
        self.decoder = self._make_stack("decoder", self.num_layers, self.sparse_step,
                                        causal=True, use_cross_attention=False)
        self._generate_functions = generation.GenerateFunctionCache()
        self.build()

    def build(self, input_shape=None):
        self._build_layers([self.decoder])
        self.built = True

    def call(self, inputs, training=None):
        token_ids, padding_mask = _unpack(inputs)
        hidden = self.decoder(self.token_embedding(token_ids), padding_mask=padding_mask,
                              training=training)
        return self._logits(hidden)

    # Generation ----------------------------------------------------------------------

    def init_cache(self, batch_size, max_length):
        """Zero self-attention cache `[batch, layers, 2, max_length, heads, head_dim]`."""
        return ops.zeros((batch_size, self.num_layers, 2, max_length, self.num_heads,
                          self.key_value_dim), dtype=self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Logits of `token_ids` `[batch, n]` at positions `cache_update_index + arange(n)`.

        Writes their keys/values into `cache` and attends causally over it.
        Returns `(logits [batch, n, vocabulary], cache)`.
        """
        hidden, cache = self.decoder(
            self.token_embedding(token_ids), padding_mask=padding_mask, cache=cache,
            cache_update_index=cache_update_index, training=False)
        return self._logits(hidden), cache

    def generate(self, inputs, max_length=None, sampler="greedy", stop_token_ids="auto",
                 use_cache=True):
        """Continues right-padded prompts up to `max_length` tokens.

        Args:
          inputs: dict with `token_ids` `[batch, seq]` and optional `padding_mask`, or a
            `[batch, seq]` id tensor (all prompt).
          max_length: total length of the output (prompt included); defaults to `seq`.
          sampler: keras-hub sampler name ("greedy", "top_k", "top_p", "random", ...) or
            instance.
          stop_token_ids: ids that end a sequence; "auto" = `(eos_token_id,)`; None
            generates up to `max_length`.
          use_cache: cached incremental decoding (fast), or a full forward pass per
            new token (reference).

        Returns:
          dict with int32 `token_ids` `[batch, max_length]` (pad id after the end) and
          bool `padding_mask` (prompt and generated tokens, stop token included).
        """
        token_ids, padding_mask = _unpack(inputs)
        token_ids, padding_mask = generation.pad_prompt(
            token_ids, padding_mask, max_length, self.pad_token_id)
        stop = generation.resolve_stop_token_ids(stop_token_ids, self.eos_token_id)
        fn = self._generate_functions.get(
            sampler, stop, use_cache, lambda s: self._make_generate_fn(s, stop, use_cache))
        token_ids, padding_mask = fn(token_ids, padding_mask)
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def _make_generate_fn(self, sampler, stop_token_ids, use_cache):
        options = dict(stop_token_ids=stop_token_ids, pad_token_id=self.pad_token_id,
                       model=self)

        def generate_step(token_ids, prompt_mask):
            if not use_cache:
                return generation.generate_tokens(
                    sampler, token_ids, prompt_mask, **options,
                    full_forward=lambda ids, mask: self(
                        {"token_ids": ids, "padding_mask": mask}, training=False))
            shape = ops.shape(token_ids)
            _, cache = self.call_with_cache(
                token_ids, self.init_cache(shape[0], shape[1]), 0, prompt_mask)
            return generation.generate_tokens(
                sampler, token_ids, prompt_mask, **options, cache=cache,
                cached_step=self.call_with_cache)

        return generate_step


def _unpack(inputs):
    """`{"token_ids", "padding_mask"}` dict (or bare ids) -> `(token_ids, padding_mask)`."""
    if isinstance(inputs, dict):
        if "token_ids" not in inputs:
            raise ValueError(
                f"`inputs` must have a 'token_ids' key, got keys {sorted(inputs)}.")
        token_ids = inputs["token_ids"]
        padding_mask = inputs.get("padding_mask")
    else:
        token_ids, padding_mask = inputs, None
    return token_ids, padding_mask
