"""`SwitchCausalLM`: decoder-only Switch / GLaM language model as a keras-hub `CausalLM`."""

import keras
import keras_hub
from keras import ops

from tfmoe.distribute.keras_fixes import DistributedBuildMixin
from tfmoe.models import generation
from tfmoe.models import presets as preset_registry
from tfmoe.models.builtin_task_options import pop_options, pop_preprocessor
from tfmoe.models.switch_backbone import SwitchBackbone
from tfmoe.models.switch_backbone.switch_backbone import DECODER_ONLY, is_builtin_preset
from tfmoe.models.switch_causal_lm.switch_causal_lm_preprocessor import SwitchCausalLMPreprocessor


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchCausalLM(DistributedBuildMixin, keras_hub.models.CausalLM):
    """Decoder-only LM with sparse (GLaM top-2 / Switch top-1) layers, keras-hub style.

    `SwitchBackbone(layout="decoder_only")` -> output projection: with tied embeddings
    the hidden states are scaled by `hidden_dim ** -0.5` and multiplied by the
    embedding matrix (T5 v1.0), otherwise by the backbone's untied output matrix;
    logits are float32. `tfmoe.models.SwitchDecoderLM` is this class. `fit` works under
    `tf.distribute` strategies with dict / bool inputs (`DistributedBuildMixin`).

    `generate("text")` / `generate(["a", "b"])` return strings (keras-hub's
    `CausalLM.generate`: preprocessing, the `compile(sampler=...)` sampler loop over a
    key/value cache, stop at the tokenizer's end token, detokenization). Without a
    preprocessor (`preprocessor=None`), `generate` takes and returns
    `{"token_ids", "padding_mask"}` dicts; with one, such a dict of prompt ids is padded
    to `max_length` and the output is text.

    Args:
      backbone: a decoder-only `SwitchBackbone`.
      preprocessor: a `SwitchCausalLMPreprocessor`, or None.
      compile: compile with keras-hub's defaults (Adam 2e-5, sparse cross-entropy from
        logits, top-k sampler).

    Call: `{"token_ids", "padding_mask"}` int `[batch, seq]` -> float32 logits
    `[batch, seq, vocabulary_size]`; position `t` predicts token `t + 1`.
    """

    backbone_cls = SwitchBackbone
    preprocessor_cls = SwitchCausalLMPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        if getattr(backbone, "layout", None) != DECODER_ONLY:
            raise ValueError(
                f"`backbone` must be a SwitchBackbone with layout='{DECODER_ONLY}', got "
                f"{type(backbone).__name__} with layout={getattr(backbone, 'layout', None)!r}."
            )
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        # === Functional model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)
        outputs = backbone.architecture.logits(backbone.token_embedding, hidden_states)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    # Generation ------------------------------------------------------------------------

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Logits of `token_ids` `[batch, n]` at positions `cache_update_index + arange(n)`.

        Writes their keys/values into `cache` `[batch, layers, 2, max_length, heads,
        head_dim]` and attends causally over it; `padding_mask` `[batch, n]` keeps
        padding out of the routers.

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
            training=False,
        )
        logits = backbone.architecture.logits(backbone.token_embedding, hidden_states)
        return logits, hidden_states, cache

    def _build_cache(self, token_ids, padding_mask):
        """Cache of the whole right-padded prompt `[batch, max_length]`.

        Returns `(hidden_states [batch, max_length, hidden], cache)`.
        """
        backbone = self.backbone
        cache = generation.empty_cache(backbone, backbone.num_layers, token_ids, self.compute_dtype)
        _, hidden_states, cache = self.call_with_cache(token_ids, cache, 0, padding_mask)
        return hidden_states, cache

    def generate_step(self, inputs, stop_token_ids=None, sampler=None):
        """One batch of generation (keras-hub's compilable inner function).

        Args:
          inputs: `{"token_ids", "padding_mask"}` `[batch, max_length]`, prompts
            right-padded (mask false where tokens are to be generated).
          stop_token_ids: ids that end a sequence, or None.
          sampler: a `keras_hub.samplers.Sampler` for this call (e.g. the greedy one
            of `tfmoe.export`); None: the one of `compile(sampler=...)`.

        Returns:
          `{"token_ids", "padding_mask"}`: the sampled ids (pad id after a stop token)
          and the mask of prompt and generated tokens (stop token included).
        """
        token_ids = ops.cast(inputs["token_ids"], "int32")
        padding_mask = ops.cast(inputs["padding_mask"], "bool")
        hidden_states, cache = self._build_cache(token_ids, padding_mask)
        token_ids, padding_mask = generation.sample(
            self,
            self.call_with_cache,
            token_ids,
            padding_mask,
            cache,
            hidden_states,
            stop_token_ids,
            sampler,
        )
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    # Presets ---------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A causal LM from a tfmoe preset name or a keras-hub preset directory.

        Args:
          preset: a `"causal_lm"` registry name (`tfmoe.models.list_presets("causal_lm")`:
            the architecture with random weights) or a directory written by
            `save_to_preset` (weights, tokenizer and preprocessor).
          load_weights: load a saved preset's weights.
          **kwargs: for a registry name, `preprocessor=...`, or `vocabulary=...` (a
            `SwitchTokenizer` vocabulary; sets `vocabulary_size` unless given) with an
            optional `sequence_length`, `compile=...`, and backbone argument overrides;
            for a saved preset, keras-hub's (`preprocessor`, `dtype`, ...).
        """
        if not is_builtin_preset(preset):
            # keras-hub's loader: `task.json` if saved by this class, else the backbone
            # and preprocessor of the preset.
            return super().from_preset(preset, load_weights=load_weights, **kwargs)
        task_kwargs = pop_options(kwargs, ("compile",))
        preprocessor = pop_preprocessor(kwargs, SwitchCausalLMPreprocessor, ("sequence_length",))
        preset_registry.get_preset(preset, preset_registry.CAUSAL_LM)  # kind check
        config = SwitchBackbone.builtin_preset_config(preset, **kwargs)
        return cls(SwitchBackbone(**config), preprocessor=preprocessor, **task_kwargs)
