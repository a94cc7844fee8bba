"""`SwitchSeq2SeqLM`: Switch Transformer encoder-decoder as a keras-hub `Seq2SeqLM`."""

import keras
import keras_hub
from keras import ops

from tfmoe.distribute.keras_fixes import DistributedBuildMixin
from tfmoe.models import generation
from tfmoe.models import presets as preset_registry
from tfmoe.models.builtin_task_options import pop_options, pop_preprocessor
from tfmoe.models.switch_backbone import SwitchBackbone, SwitchSeq2SeqBackbone
from tfmoe.models.switch_backbone.switch_backbone import is_builtin_preset
from tfmoe.models.switch_seq2seq_lm.switch_seq2seq_lm_preprocessor import (
    SwitchSeq2SeqLMPreprocessor,
)


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchSeq2SeqLM(DistributedBuildMixin, keras_hub.models.Seq2SeqLM):
    """Switch Transformer / T5 v1.0 text-to-text model, keras-hub style.

    `SwitchSeq2SeqBackbone` -> decoder hidden states -> output projection (tied:
    `hidden_dim ** -0.5` scaling and the embedding matrix; untied: the output matrix)
    -> float32 logits. `tfmoe.models.SwitchTransformer` is this class. `fit` works
    under `tf.distribute` strategies with dict / bool inputs (`DistributedBuildMixin`).

    `generate("source text")` / `generate([...])` return the decoded target text
    (keras-hub's loop: the encoder runs once, the decoder token by token over a
    key/value cache, with the cross-attention keys/values computed once). Without a
    preprocessor, `generate` takes and returns token-id dicts.

    Args:
      backbone: a `SwitchSeq2SeqBackbone`.
      preprocessor: a `SwitchSeq2SeqLMPreprocessor` (its tokenizer's pad id must be
        the backbone's `decoder_start_token_id`), or None.

    Call: `{"encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
    "decoder_padding_mask"}` -> float32 logits `[batch, target_seq, vocabulary_size]`.
    """

    backbone_cls = SwitchSeq2SeqBackbone
    preprocessor_cls = SwitchSeq2SeqLMPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        if not isinstance(backbone, SwitchSeq2SeqBackbone):
            raise ValueError(
                f"`backbone` must be a SwitchSeq2SeqBackbone, got {type(backbone).__name__}."
            )
        pad_token_id = None if preprocessor is None else preprocessor.tokenizer.pad_token_id
        # (None: a tokenizer whose vocabulary a preset loads after this constructor.)
        if pad_token_id is not None and pad_token_id != backbone.decoder_start_token_id:
            raise ValueError(
                f"The preprocessor starts decoder inputs with the pad id "
                f"({pad_token_id}), but the backbone's "
                f"`decoder_start_token_id` is {backbone.decoder_start_token_id}."
            )
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        # === Functional model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)["decoder_sequence_output"]
        outputs = backbone.architecture.logits(backbone.token_embedding, hidden_states)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    # Generation ------------------------------------------------------------------------

    def call_encoder(self, token_ids, padding_mask):
        """Encoder output `[batch, source_seq, hidden]` (inference mode)."""
        return self.backbone.encode(token_ids, padding_mask)

    def call_decoder_with_cache(
        self,
        token_ids,
        cache,
        cache_update_index,
        cross_cache,
        encoder_padding_mask,
        padding_mask=None,
    ):
        """Decoder logits of `token_ids` `[batch, n]` at `cache_update_index + arange(n)`.

        `cache`: self-attention keys/values `[batch, layers, 2, max_length, heads,
        head_dim]`; `cross_cache`: `backbone.decoder.compute_cross_cache(encoder_output)`.

        Returns:
          `(logits [batch, n, vocabulary] float32, hidden_states [batch, n, hidden],
          cache)`.
        """
        backbone = self.backbone
        hidden_states, cache = backbone.decoder(
            backbone.token_embedding(token_ids),
            padding_mask=padding_mask,
            cache=cache,
            cache_update_index=cache_update_index,
            cross_cache=cross_cache,
            encoder_padding_mask=encoder_padding_mask,
            training=False,
        )
        logits = backbone.architecture.logits(backbone.token_embedding, hidden_states)
        return logits, hidden_states, cache

    def generate_step(self, inputs, stop_token_ids=None, sampler=None):
        """One batch of generation (keras-hub's compilable inner function).

        Args:
          inputs: `{"encoder_token_ids", "encoder_padding_mask"}` and the decoder
            prompt `{"decoder_token_ids", "decoder_padding_mask"}` `[batch,
            max_length]`, right-padded (mask false where tokens are to be generated).
          stop_token_ids: ids that end a sequence, or None.
          sampler: a `keras_hub.samplers.Sampler` for this call (e.g. the greedy one
            of `tfmoe.export`); None: the one of `compile(sampler=...)`.

        Returns:
          `{"decoder_token_ids", "decoder_padding_mask"}` (pad id after a stop token).
        """
        backbone = self.backbone
        encoder_mask = ops.cast(inputs["encoder_padding_mask"], "bool")
        token_ids = ops.cast(inputs["decoder_token_ids"], "int32")
        padding_mask = ops.cast(inputs["decoder_padding_mask"], "bool")
        encoder_output = self.call_encoder(inputs["encoder_token_ids"], encoder_mask)
        cross_cache = backbone.decoder.compute_cross_cache(encoder_output)
        cache = generation.empty_cache(
            backbone, backbone.num_decoder_layers, token_ids, self.compute_dtype
        )
        _, hidden_states, cache = self.call_decoder_with_cache(
            token_ids, cache, 0, cross_cache, encoder_mask, padding_mask
        )

        def step(token, cache, index):
            return self.call_decoder_with_cache(token, cache, index, cross_cache, encoder_mask)

        token_ids, padding_mask = generation.sample(
            self, step, token_ids, padding_mask, cache, hidden_states, stop_token_ids, sampler
        )
        return {"decoder_token_ids": token_ids, "decoder_padding_mask": padding_mask}

    # Presets ---------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A seq2seq LM from a tfmoe preset name or a keras-hub preset directory.

        Args:
          preset: a `"seq2seq"` registry name (`tfmoe.models.list_presets("seq2seq")`:
            the architecture with random weights) or a directory written by
            `save_to_preset`.
          load_weights: load a saved preset's weights.
          **kwargs: for a registry name, `preprocessor=...` or `vocabulary=...` (sets
            `vocabulary_size` unless given) with optional `encoder_sequence_length` /
            `decoder_sequence_length`, `compile=...`, and backbone argument overrides;
            for a saved preset, keras-hub's.
        """
        if not is_builtin_preset(preset):
            return super().from_preset(preset, load_weights=load_weights, **kwargs)
        preset_registry.get_preset(preset, preset_registry.SEQ2SEQ)  # kind check
        task_kwargs = pop_options(kwargs, ("compile",))
        preprocessor = pop_preprocessor(
            kwargs,
            SwitchSeq2SeqLMPreprocessor,
            ("encoder_sequence_length", "decoder_sequence_length"),
        )
        config = SwitchBackbone.builtin_preset_config(preset, **kwargs)
        return cls(SwitchSeq2SeqBackbone(**config), preprocessor=preprocessor, **task_kwargs)
