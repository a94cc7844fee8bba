"""Shared base of the model zoo: architecture arguments, token embedding, stacks, presets."""

import inspect

import keras

from tfmoe.distribute.keras_fixes import DistributedBuildMixin
from tfmoe.models import presets as preset_registry
from tfmoe.models.switch_architecture import SwitchArchitecture


class SwitchModel(DistributedBuildMixin, keras.Model):
    """Base class of `SwitchTransformer`, `SwitchDecoderLM` and `SwitchClassifier`.

    Architecture arguments (shared by every model, and by `SwitchBackbone`): see
    `tfmoe.models.switch_architecture.SwitchArchitecture`, which checks them and
    builds the layers; every argument is also an attribute of the model
    (`model.hidden_dim`, `model.num_experts`, ...). Other keyword arguments (`name`,
    `dtype`, `trainable`) go to `keras.Model`.
    """

    preset_kind = None  # "seq2seq" or "causal_lm": the presets this class accepts.
    has_output_projection = True  # False: no vocabulary logits (no untied output matrix).

    def __init__(self, vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
                 **kwargs):
        architecture_kwargs, kwargs = SwitchArchitecture.split_arguments(kwargs)
        super().__init__(**kwargs)
        self.architecture = SwitchArchitecture(
            vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
            **architecture_kwargs)
        for name, value in self.architecture.values().items():
            setattr(self, name, value)
        self.token_embedding = self.architecture.make_token_embedding(
            tie_weights=self.tie_embeddings or not self.has_output_projection,
            dtype=self.dtype_policy)

    # Construction helpers ------------------------------------------------------------

    @property
    def moe_options(self):
        """The MoE layer options (`tfmoe.layers.feed_forward_factory.MOE_OPTION_NAMES`)."""
        return self.architecture.moe_options

    def _make_stack(self, name, num_layers, sparse_step, causal, use_cross_attention):
        return self.architecture.make_stack(name, num_layers, sparse_step, causal,
                                            use_cross_attention, dtype=self.dtype_policy)

    def _build_layers(self, layers):
        """Creates all weights up front, so `count_params()` works before any call."""
        if not self.token_embedding.built:
            self.token_embedding.build((None, None))
        for layer in layers:
            if not layer.built:
                layer.build((None, None, self.hidden_dim))

    def _logits(self, hidden_states):
        """Final hidden states `[..., hidden]` -> float32 logits `[..., vocabulary]`."""
        return self.architecture.logits(self.token_embedding, hidden_states)

    # Config and presets --------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(self.architecture.get_config())
        return config

    @classmethod
    def accepted_arguments(cls):
        """Names of the constructor arguments of `cls` (over its whole class chain)."""
        names = set(SwitchArchitecture.argument_names())
        for klass in cls.__mro__:
            if klass is SwitchModel.__base__:
                break
            params = inspect.signature(klass.__init__).parameters.values()
            names.update(p.name for p in params
                         if p.name != "self" and p.kind is not p.VAR_KEYWORD)
        return names

    @classmethod
    def preset_config(cls, name, **overrides):
        """The constructor arguments of preset `name` for this class, with `overrides`.

        Preset keys this class has no use for (e.g. `num_decoder_layers` for the
        encoder-only classifier) are dropped; unknown `overrides` raise a ValueError.
        """
        config = preset_registry.get_preset(name, cls.preset_kind)["config"]
        accepted = cls.accepted_arguments()
        unknown = sorted(set(overrides) - accepted - {"name", "dtype", "trainable"})
        if unknown:
            raise ValueError(
                f"Unknown override(s) {unknown} for {cls.__name__}; valid arguments: "
                f"{sorted(accepted)}.")
        config = {k: v for k, v in config.items() if k in accepted}
        config.update(overrides)
        return config

    @classmethod
    def from_preset(cls, name, **overrides):
        """Builds the model of preset `name` (see `tfmoe.models.list_presets()`).

        `overrides` replace preset arguments (e.g. `vocabulary_size=...`,
        `num_experts=0` for the dense baseline, `eval_capacity_factor=...`, `dtype=...`).
        Raises a ValueError listing the valid names for an unknown `name`.
        """
        return cls(**cls.preset_config(name, **overrides))

    @classmethod
    def presets(cls):
        """Names of the presets this class can be built from."""
        return preset_registry.list_presets(cls.preset_kind)
