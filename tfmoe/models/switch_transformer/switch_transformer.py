"""Switch Transformer encoder-decoder (T5 v1.0 layout with sparse feed-forward layers)."""

import keras
import tensorflow as tf
from keras import ops

from tfmoe.models import generation
from tfmoe.models.presets import SEQ2SEQ
from tfmoe.models.switch_model import SwitchModel


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchTransformer(SwitchModel):
    """Switch Transformer / T5 v1.0 encoder-decoder, layer for layer like Hugging Face's
    `SwitchTransformersForConditionalGeneration`.

    Shared token embedding (no scaling) -> encoder stack (bidirectional relative position
    buckets) and decoder stack (causal, unidirectional buckets, cross-attention) ->
    output projection (tied: `hidden_dim ** -0.5` scaling and the embedding matrix;
    untied: a separate `[hidden, vocabulary]` matrix). Sparse feed-forward layers sit
    at layer `i` of a stack when `i % sparse_step == 1` (every layer for step 1).

    Args:
      num_decoder_layers: decoder depth (defaults to `num_layers`).
      decoder_sparse_step: decoder sparse frequency (defaults to `sparse_step`).
      decoder_start_token_id: first decoder input token (T5: the pad id, 0).
      Other arguments: see `tfmoe.models.SwitchModel`.

    Call arguments:
      inputs: dict with `encoder_token_ids` `[batch, source_seq]`,
        `encoder_padding_mask` `[batch, source_seq]`, `decoder_token_ids`
        `[batch, target_seq]` (targets shifted right behind the start token) and
        `decoder_padding_mask` `[batch, target_seq]`; masks are true / 1 for real tokens
        and default to all real.
      training: dropout and capacity-factor switch.

    Returns:
      float32 logits `[batch, target_seq, vocabulary_size]`.

    Weight names, `tfmoe` <- Hugging Face (kernels are `[in, out]`: transpose the
    PyTorch `Linear.weight`; `{s}` is `encoder` or `decoder`, `{i}` the layer,
    `{f}` the feed-forward sublayer, 1 in the encoder and 2 in the decoder):
      token_embedding.embeddings                  <- shared.weight
      token_embedding.reverse_embeddings          <- lm_head.weight.T (untied only)
      {s}.relative_position_bias.embeddings       <- {s}.block.0.layer.0.SelfAttention
                                                     .relative_attention_bias.weight
      {s}.blocks[i].self_attention_layer_norm.scale <- {s}.block.{i}.layer.0.layer_norm.weight
      {s}.blocks[i].self_attention.{q,k,v,o}      <- {s}.block.{i}.layer.0.SelfAttention
                                                     .{q,k,v,o}.weight.T
      decoder.blocks[i].cross_attention_layer_norm.scale <- decoder.block.{i}.layer.1
                                                     .layer_norm.weight
      decoder.blocks[i].cross_attention.{q,k,v,o} <- decoder.block.{i}.layer.1
                                                     .EncDecAttention.{q,k,v,o}.weight.T
      {s}.blocks[i].feed_forward_layer_norm.scale <- {s}.block.{i}.layer.{f}.layer_norm.weight
      dense:  {s}.blocks[i].feed_forward.{wi,wo}  <- {s}.block.{i}.layer.{f}.mlp.{wi,wo}.weight.T
      sparse: {s}.blocks[i].feed_forward.router.kernel <- ....mlp.router.classifier.weight.T
              {s}.blocks[i].feed_forward.experts.wi[j] <- ....mlp.experts.expert_{j}
                                                     .wi.weight (tfmoe stores it [out, in])
              {s}.blocks[i].feed_forward.experts.wo[j] <- ....mlp.experts.expert_{j}
                                                     .wo.weight.T
      {s}.final_layer_norm.scale                  <- {s}.final_layer_norm.weight
    (gated models: `wi_0`, `wi_1` instead of `wi`.)
    """

    preset_kind = SEQ2SEQ

    def __init__(self, vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
                 *, num_decoder_layers=None, decoder_sparse_step=None,
                 decoder_start_token_id=0, **kwargs):
        super().__init__(vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
                         **kwargs)
        self.num_decoder_layers = int(num_layers if num_decoder_layers is None
                                      else num_decoder_layers)
        self.decoder_sparse_step = int(self.sparse_step if decoder_sparse_step is None
                                       else decoder_sparse_step)
        self.decoder_start_token_id = int(decoder_start_token_id)
        self.encoder = self._make_stack("encoder", self.num_layers, self.sparse_step,
                                        causal=False, use_cross_attention=False)
        self.decoder = self._make_stack("decoder", self.num_decoder_layers,
                                        self.decoder_sparse_step, causal=True,
                                        use_cross_attention=True)
        self._generate_functions = generation.GenerateFunctionCache()
        self.build()

    def build(self, input_shape=None):
        self._build_layers([self.encoder, self.decoder])
        self.built = True

    def encode(self, token_ids, padding_mask=None, training=None):
        """Encoder output `[batch, source_seq, hidden]` (after the final norm)."""
        return self.encoder(self.token_embedding(token_ids), padding_mask=padding_mask,
                            training=training)

    def decode(self, token_ids, encoder_output, encoder_padding_mask=None, padding_mask=None,
               training=None):
        """Decoder logits `[batch, target_seq, vocabulary]` given the encoder output."""
        hidden = self.decoder(
            self.token_embedding(token_ids), padding_mask=padding_mask,
            encoder_output=encoder_output, encoder_padding_mask=encoder_padding_mask,
            training=training)
        return self._logits(hidden)

    def call(self, inputs, training=None):
        _check_keys(inputs, ("encoder_token_ids", "decoder_token_ids"))
        encoder_mask = inputs.get("encoder_padding_mask")
        encoder_output = self.encode(inputs["encoder_token_ids"], encoder_mask,
                                     training=training)
        return self.decode(inputs["decoder_token_ids"], encoder_output, encoder_mask,
                           inputs.get("decoder_padding_mask"), training=training)

    # Generation ----------------------------------------------------------------------

    def init_cache(self, batch_size, max_length):
        """Zero decoder self-attention cache `[batch, layers, 2, max_length, heads, d_kv]`."""
        return ops.zeros((batch_size, self.num_decoder_layers, 2, max_length, self.num_heads,
                          self.key_value_dim), dtype=self.compute_dtype)

    def call_decoder_with_cache(self, token_ids, cache, cache_update_index, cross_cache,
                                encoder_padding_mask=None, padding_mask=None):
        """Decoder logits of `token_ids` `[batch, n]` at `cache_update_index + arange(n)`.

        `cross_cache` is `self.decoder.compute_cross_cache(encoder_output)`.
        Returns `(logits [batch, n, vocabulary], cache)`.
        """
        hidden, cache = self.decoder(
            self.token_embedding(token_ids), padding_mask=padding_mask, cache=cache,
            cache_update_index=cache_update_index, cross_cache=cross_cache,
            encoder_padding_mask=encoder_padding_mask, training=False)
        return self._logits(hidden), cache

    def generate(self, inputs, max_length, sampler="greedy", stop_token_ids="auto",
                 use_cache=True):
        """Text-to-text generation: encodes the source once, then decodes token by token.

        Args:
          inputs: dict with `encoder_token_ids` `[batch, source_seq]`, optional
            `encoder_padding_mask`, and optional decoder prompt `decoder_token_ids` /
            `decoder_padding_mask` (default: the start token alone); or a bare
            `[batch, source_seq]` id tensor.
          max_length: decoder output length (start token included).
          sampler: keras-hub sampler name ("greedy", "top_k", "top_p", ...) or instance.
          stop_token_ids: "auto" = `(eos_token_id,)`, None, or ids.
          use_cache: cached incremental decoding, or one full decoder pass per token.

        Returns:
          dict with int32 `decoder_token_ids` `[batch, max_length]` (start token first,
          pad id after the end) and bool `decoder_padding_mask`.
        """
        if not isinstance(inputs, dict):
            inputs = {"encoder_token_ids": inputs}
        _check_keys(inputs, ("encoder_token_ids",))
        encoder_ids = tf.cast(tf.convert_to_tensor(inputs["encoder_token_ids"]), tf.int32)
        encoder_mask = inputs.get("encoder_padding_mask")
        encoder_mask = (tf.ones_like(encoder_ids, tf.bool) if encoder_mask is None
                        else tf.cast(tf.convert_to_tensor(encoder_mask), tf.bool))
        decoder_ids = inputs.get("decoder_token_ids")
        decoder_mask = inputs.get("decoder_padding_mask")
        if decoder_ids is None:
            decoder_ids = tf.fill([tf.shape(encoder_ids)[0], 1], self.decoder_start_token_id)
            decoder_mask = None
        decoder_ids, decoder_mask = generation.pad_prompt(
            decoder_ids, decoder_mask, max_length, self.pad_token_id)
        stop = generation.resolve_stop_token_ids(stop_token_ids, self.eos_token_id)
        fn = self._generate_functions.get(
            sampler, stop, use_cache, lambda s: self._make_generate_fn(s, stop, use_cache))
        token_ids, padding_mask = fn(encoder_ids, encoder_mask, decoder_ids, decoder_mask)
        return {"decoder_token_ids": token_ids, "decoder_padding_mask": padding_mask}

    def _make_generate_fn(self, sampler, stop_token_ids, use_cache):
        options = dict(stop_token_ids=stop_token_ids, pad_token_id=self.pad_token_id,
                       model=self)

        def generate_step(encoder_ids, encoder_mask, token_ids, prompt_mask):
            encoder_output = self.encode(encoder_ids, encoder_mask, training=False)
            if not use_cache:
                return generation.generate_tokens(
                    sampler, token_ids, prompt_mask, **options,
                    full_forward=lambda ids, mask: self.decode(
                        ids, encoder_output, encoder_mask, mask, training=False))
            cross_cache = self.decoder.compute_cross_cache(encoder_output)

            def cached_step(ids, cache, index, padding_mask=None):
                return self.call_decoder_with_cache(ids, cache, index, cross_cache,
                                                    encoder_mask, padding_mask)

            shape = ops.shape(token_ids)
            _, cache = cached_step(
                token_ids, self.init_cache(shape[0], shape[1]), 0, prompt_mask)
            return generation.generate_tokens(
                sampler, token_ids, prompt_mask, **options, cache=cache,
                cached_step=cached_step)

        return generate_step

    def get_config(self):
        config = super().get_config()
        config.update(
            num_decoder_layers=self.num_decoder_layers,
            decoder_sparse_step=self.decoder_sparse_step,
            decoder_start_token_id=self.decoder_start_token_id,
        )
        return config


def _check_keys(inputs, keys):
    if not isinstance(inputs, dict):
        raise ValueError(f"`inputs` must be a dict with keys {list(keys)}, got {type(inputs)}.")
    missing = [k for k in keys if k not in inputs]
    if missing:
        raise ValueError(f"`inputs` is missing {missing}; got keys {sorted(inputs)}.")
