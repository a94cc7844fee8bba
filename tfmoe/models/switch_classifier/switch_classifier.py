"""Sequence classifier: Switch / T5 encoder + pooled classification head."""

import keras
from keras import ops

from tfmoe.models.presets import SEQ2SEQ
from tfmoe.models.switch_model import SwitchModel

POOLINGS = ("mean", "first")


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchClassifier(SwitchModel):
    """Encoder-only classifier built from a seq2seq preset (its encoder half).

    Token embedding -> encoder stack (bidirectional, sparse layers as in the preset) ->
    pooling over real tokens -> dropout -> dense head (with bias).

    Args:
      num_classes: number of output classes.
      pooling: "mean" (masked mean over real tokens, default) or "first" (first token).
      classifier_dropout: dropout before the head (defaults to `dropout`).
      Other arguments: see `tfmoe.models.SwitchModel` (`num_layers` is the encoder depth).

    Call arguments:
      inputs: dict with `token_ids` `[batch, seq]` and optional `padding_mask`
        `[batch, seq]` (`encoder_token_ids` / `encoder_padding_mask` are accepted too).
      training: dropout and capacity-factor switch.

    Returns:
      float32 logits `[batch, num_classes]`.

    Layers: `token_embedding`, `encoder` (`TransformerStack`), `classifier_head` (Dense).
    """

    preset_kind = SEQ2SEQ
    has_output_projection = False

    def __init__(self, vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
                 *, num_classes, pooling="mean", classifier_dropout=None, **kwargs):
        super().__init__(vocabulary_size, hidden_dim, num_heads, intermediate_dim, num_layers,
                         **kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}.")
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.classifier_dropout = (self.dropout if classifier_dropout is None
                                   else float(classifier_dropout))
        self.encoder = self._make_stack("encoder", self.num_layers, self.sparse_step,
                                        causal=False, use_cross_attention=False)
        self.pooled_dropout = keras.layers.Dropout(self.classifier_dropout,
                                                   dtype=self.dtype_policy)
        self.classifier_head = keras.layers.Dense(
            self.num_classes, dtype=self.dtype_policy, name="classifier_head")
        self.build()

    @classmethod
    def from_preset(cls, name, num_classes, **overrides):
        """Classifier on the encoder of seq2seq preset `name` with `num_classes` outputs."""
        return cls(**cls.preset_config(name, num_classes=num_classes, **overrides))

    def build(self, input_shape=None):
        self._build_layers([self.encoder])
        if not self.classifier_head.built:
            self.classifier_head.build((None, self.hidden_dim))
        self.built = True

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict):
            inputs = {"token_ids": inputs}
        prefix = "" if "token_ids" in inputs else "encoder_"
        if prefix + "token_ids" not in inputs:
            raise ValueError(
                f"`inputs` must have a 'token_ids' key, got keys {sorted(inputs)}.")
        token_ids = inputs[prefix + "token_ids"]
        padding_mask = inputs.get(prefix + "padding_mask")
        hidden = self.encoder(self.token_embedding(token_ids), padding_mask=padding_mask,
                              training=training)
        if self.pooling == "first":
            pooled = hidden[:, 0]
        elif padding_mask is None:
            pooled = ops.mean(hidden, axis=1)
        else:
            weights = ops.cast(padding_mask, hidden.dtype)[:, :, None]
            total = ops.sum(hidden * weights, axis=1)
            pooled = total / ops.maximum(ops.sum(weights, axis=1), 1.0)
        pooled = self.pooled_dropout(pooled, training=training)
        return ops.cast(self.classifier_head(pooled), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, pooling=self.pooling,
                      classifier_dropout=self.classifier_dropout)
        return config
