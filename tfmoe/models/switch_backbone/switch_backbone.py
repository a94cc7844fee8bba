"""`SwitchBackbone`: the tfmoe architecture as a functional keras-hub `Backbone`."""

import os

import keras
import keras_hub

from tfmoe.models import presets as preset_registry
from tfmoe.models.switch_architecture import SwitchArchitecture

DECODER_ONLY = "decoder_only"
ENCODER_DECODER = "encoder_decoder"
ENCODER_ONLY = "encoder_only"
LAYOUTS = (DECODER_ONLY, ENCODER_DECODER, ENCODER_ONLY)

# Layout of the backbone built from a registry preset of each kind.
_PRESET_LAYOUTS = {
    preset_registry.CAUSAL_LM: DECODER_ONLY,
    preset_registry.SEQ2SEQ: ENCODER_DECODER,
}
# Arguments that only an encoder-decoder backbone takes.
_DECODER_ARGUMENTS = ("num_decoder_layers", "decoder_sparse_step", "decoder_start_token_id")


def is_builtin_preset(preset):
    """Whether `preset` names a tfmoe registry preset (`tfmoe.models.list_presets()`).

    A local directory of that name wins. Raises the registry's ValueError (which lists
    the valid names) for a string that is neither a preset name, an existing path nor
    a `scheme://` handle.
    """
    if not isinstance(preset, str) or os.path.exists(preset) or "://" in preset:
        return False
    preset_registry.get_preset(preset)  # raises for unknown names
    return True


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchBackbone(keras_hub.models.Backbone):
    """Switch Transformer / GLaM backbone: token embedding and transformer stacks.

    The layers of every tfmoe model (built by `SwitchArchitecture`) in a functional
    keras-hub `Backbone`; the tasks (`SwitchCausalLM`, ...) add the output
    projection or head. MoE auxiliary losses reach `model.losses` (and `fit`) through the
    MoE layers' `add_loss`, routing metrics through their `RoutingMetrics`.

    Args:
      vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers, and the
        other architecture arguments: see `SwitchArchitecture`.
      layout: `"decoder_only"` (causal stack `decoder`, GLaM; `SwitchCausalLM`),
        `"encoder_only"` (bidirectional stack `encoder`; `SwitchTextClassifier`) or
        `"encoder_decoder"` (stacks `encoder` and `decoder` with cross-attention,
        Switch / T5; `SwitchSeq2SeqLM` takes the `SwitchSeq2SeqBackbone` subclass).
      num_decoder_layers: decoder depth (encoder-decoder; defaults to `num_layers`).
      decoder_sparse_step: decoder sparse frequency (encoder-decoder; defaults to
        `sparse_step`).
      decoder_start_token_id: first decoder input token (encoder-decoder; T5: 0).
      separate_input_embeddings: give the encoder its own input embedding
        (`encoder_token_embedding`) instead of sharing `token_embedding` with the
        decoder (encoder-decoder only; Hugging Face Switch models built with
        `tie_word_embeddings=False` by transformers 5 have one per stack).
      dtype: dtype policy of the layers (MoE routers stay in `router_dtype`).

    Inputs (int `[batch, seq]`; masks are 1 / true for real tokens):
      decoder-only: `token_ids`, `padding_mask`;
      encoder-only: `token_ids`, `padding_mask`;
      encoder-decoder: `encoder_token_ids`, `encoder_padding_mask`,
        `decoder_token_ids`, `decoder_padding_mask`.

    Outputs:
      decoder-only / encoder-only: final hidden states `[batch, seq, hidden]` (after
      the stack's final norm); encoder-decoder: `{"encoder_sequence_output":
      [batch, source_seq, hidden], "decoder_sequence_output": [batch, target_seq,
      hidden]}`.

    Layers: `token_embedding` (`ReversibleEmbedding`; its `reverse_embeddings` is the
    untied output matrix when `tie_embeddings=False`), `encoder_token_embedding` (with
    `separate_input_embeddings`; else the property of that name is `token_embedding`),
    `encoder` and/or `decoder` (`TransformerStack`).
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_heads,
        intermediate_dim,
        num_layers,
        *,
        layout=DECODER_ONLY,
        num_decoder_layers=None,
        decoder_sparse_step=None,
        decoder_start_token_id=None,
        separate_input_embeddings=False,
        dtype=None,
        **kwargs,
    ):
        architecture_kwargs, kwargs = SwitchArchitecture.split_arguments(kwargs)
        architecture = SwitchArchitecture(
            vocabulary_size,
            hidden_dim,
            num_heads,
            intermediate_dim,
            num_layers,
            **architecture_kwargs,
        )
        if layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}, got {layout!r}.")
        encoder_decoder = layout == ENCODER_DECODER
        if not encoder_decoder:
            given = [
                name
                for name, value in zip(
                    _DECODER_ARGUMENTS,
                    (num_decoder_layers, decoder_sparse_step, decoder_start_token_id),
                )
                if value is not None
            ]
            if separate_input_embeddings:
                given.append("separate_input_embeddings")
            if given:
                raise ValueError(
                    f"{given} only apply to `layout='{ENCODER_DECODER}'`, got `layout={layout!r}`."
                )
        else:
            num_decoder_layers = int(
                architecture.num_layers if num_decoder_layers is None else num_decoder_layers
            )
            decoder_sparse_step = int(
                architecture.sparse_step if decoder_sparse_step is None else decoder_sparse_step
            )
            decoder_start_token_id = int(
                0 if decoder_start_token_id is None else decoder_start_token_id
            )
            if num_decoder_layers < 1:
                raise ValueError(f"`num_decoder_layers` must be >= 1, got {num_decoder_layers}.")
            if decoder_sparse_step < 0:
                raise ValueError(f"`decoder_sparse_step` must be >= 0, got {decoder_sparse_step}.")

        # === Layers ===
        self.token_embedding = architecture.make_token_embedding(
            tie_weights=architecture.tie_embeddings or layout == ENCODER_ONLY, dtype=dtype
        )
        # The encoder's own input embedding: an embedding only (no output matrix).
        self._encoder_token_embedding = None
        if separate_input_embeddings:
            self._encoder_token_embedding = architecture.make_token_embedding(
                tie_weights=True, dtype=dtype, name="encoder_token_embedding"
            )
        self.encoder = None
        self.decoder = None
        if layout in (ENCODER_DECODER, ENCODER_ONLY):
            self.encoder = architecture.make_stack(
                "encoder",
                architecture.num_layers,
                architecture.sparse_step,
                causal=False,
                use_cross_attention=False,
                dtype=dtype,
            )
        if layout == ENCODER_DECODER:
            self.decoder = architecture.make_stack(
                "decoder",
                num_decoder_layers,
                decoder_sparse_step,
                causal=True,
                use_cross_attention=True,
                dtype=dtype,
            )
        elif layout == DECODER_ONLY:
            self.decoder = architecture.make_stack(
                "decoder",
                architecture.num_layers,
                architecture.sparse_step,
                causal=True,
                use_cross_attention=False,
                dtype=dtype,
            )

        # === Functional model ===
        def ids_input(name):
            return keras.Input(shape=(None,), dtype="int32", name=name)

        if encoder_decoder:
            inputs = {
                name: ids_input(name)
                for name in (
                    "encoder_token_ids",
                    "encoder_padding_mask",
                    "decoder_token_ids",
                    "decoder_padding_mask",
                )
            }
            # `training=None`: the functional graph takes the mode of each later call.
            encoder_output = self.encode(
                inputs["encoder_token_ids"], inputs["encoder_padding_mask"], training=None
            )
            decoder_output = self.decoder(
                self.token_embedding(inputs["decoder_token_ids"]),
                padding_mask=inputs["decoder_padding_mask"],
                encoder_output=encoder_output,
                encoder_padding_mask=inputs["encoder_padding_mask"],
            )
            outputs = {
                "encoder_sequence_output": encoder_output,
                "decoder_sequence_output": decoder_output,
            }
        else:
            inputs = {name: ids_input(name) for name in ("token_ids", "padding_mask")}
            stack = self.decoder if layout == DECODER_ONLY else self.encoder
            outputs = stack(
                self.token_embedding(inputs["token_ids"]), padding_mask=inputs["padding_mask"]
            )
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.architecture = architecture
        for name, value in architecture.values().items():
            setattr(self, name, value)
        self.layout = layout
        self.num_decoder_layers = num_decoder_layers
        self.decoder_sparse_step = decoder_sparse_step
        self.decoder_start_token_id = decoder_start_token_id
        self.separate_input_embeddings = bool(separate_input_embeddings)

    @property
    def encoder_token_embedding(self):
        """The encoder's input embedding `[batch, seq]` -> `[batch, seq, hidden]`:
        its own with `separate_input_embeddings`, else `token_embedding`."""
        if self._encoder_token_embedding is None:
            return self.token_embedding
        return self._encoder_token_embedding

    def encode(self, token_ids, padding_mask, training=False):
        """Encoder states `[batch, seq, hidden]` of `token_ids` / `padding_mask` `[batch, seq]`.

        Raises:
          ValueError: a decoder-only backbone (it has no encoder).
        """
        if self.encoder is None:
            raise ValueError(f"a {self.layout} backbone has no encoder")
        return self.encoder(
            self.encoder_token_embedding(token_ids), padding_mask=padding_mask, training=training
        )

    @property
    def moe_options(self):
        """The MoE layer options (`tfmoe.layers.MOE_OPTIONS`)."""
        return self.architecture.moe_options

    def get_config(self):
        config = super().get_config()
        config.update(self.architecture.get_config())
        config.update(
            layout=self.layout,
            num_decoder_layers=self.num_decoder_layers,
            decoder_sparse_step=self.decoder_sparse_step,
            decoder_start_token_id=self.decoder_start_token_id,
            separate_input_embeddings=self.separate_input_embeddings,
        )
        return config

    # Presets ---------------------------------------------------------------------------

    @classmethod
    def accepted_arguments(cls):
        """Names of the constructor arguments (architecture, layout and Keras ones)."""
        return set(SwitchArchitecture.argument_names()) | {
            "layout",
            *_DECODER_ARGUMENTS,
            "separate_input_embeddings",
            "dtype",
            "name",
            "trainable",
        }

    @classmethod
    def builtin_preset_config(cls, name, **overrides):
        """Constructor arguments of registry preset `name` (`tfmoe.models.list_presets()`).

        `"causal_lm"` presets give a decoder-only backbone, `"seq2seq"` ones an
        encoder-decoder (or, with `layout="encoder_only"`, its encoder half).

        Raises:
          ValueError: an unknown preset name (listing the valid ones) or unknown
            `overrides` (listing the valid arguments).
        """
        entry = preset_registry.get_preset(name)
        accepted = cls.accepted_arguments()
        unknown = sorted(set(overrides) - accepted)
        if unknown:
            raise ValueError(
                f"Unknown override(s) {unknown} for {cls.__name__}; valid "
                f"arguments: {sorted(accepted)}."
            )
        config = {"layout": _PRESET_LAYOUTS[entry["kind"]], **entry["config"]}
        config.update(overrides)
        if config["layout"] != ENCODER_DECODER:
            for key in _DECODER_ARGUMENTS:
                if key not in overrides:
                    config.pop(key, None)
        return config

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A backbone from a tfmoe preset name or a keras-hub preset directory.

        Args:
          preset: a registry name (`tfmoe.models.list_presets()`: the architecture,
            random weights) or a preset saved by `save_to_preset` (trained weights;
            anything `keras_hub.models.Backbone.from_preset` accepts).
          load_weights: load a saved preset's weights (False: random weights).
          **kwargs: for a registry name, argument overrides (e.g. `num_experts=0`,
            `vocabulary_size=...`, `dtype=...`); for a saved preset, keras-hub's
            (e.g. `dtype`).
        """
        if is_builtin_preset(preset):
            config = cls.builtin_preset_config(preset, **kwargs)
            if cls is SwitchBackbone and config["layout"] == ENCODER_DECODER:
                return SwitchSeq2SeqBackbone(**config)
            return cls(**config)
        return super().from_preset(preset, load_weights=load_weights, **kwargs)


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchSeq2SeqBackbone(SwitchBackbone):
    """`SwitchBackbone` with `layout="encoder_decoder"`: the backbone of `SwitchSeq2SeqLM`.

    A class of its own because keras-hub's preset loaders pick a task class from the
    backbone class saved in `config.json` (`Task.backbone_cls`); with one class for
    every layout, `keras_hub.models.CausalLM.from_preset(dir)` could not tell a
    causal LM preset from a seq2seq one (`Seq2SeqLM` is a `CausalLM`). Same arguments,
    inputs and outputs as `SwitchBackbone(layout="encoder_decoder")`.
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_heads,
        intermediate_dim,
        num_layers,
        *,
        layout=ENCODER_DECODER,
        **kwargs,
    ):
        if layout != ENCODER_DECODER:
            raise ValueError(
                f"`layout` of a {type(self).__name__} must be '{ENCODER_DECODER}', got {layout!r}."
            )
        super().__init__(
            vocabulary_size,
            hidden_dim,
            num_heads,
            intermediate_dim,
            num_layers,
            layout=layout,
            **kwargs,
        )
