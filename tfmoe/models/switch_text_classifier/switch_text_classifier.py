"""`SwitchTextClassifier`: Switch / T5 encoder + pooled head as a keras-hub `TextClassifier`."""

import keras
import keras_hub
from keras import ops

from tfmoe.distribute.keras_fixes import DistributedBuildMixin
from tfmoe.models import presets as preset_registry
from tfmoe.models.builtin_task_options import pop_options, pop_preprocessor
from tfmoe.models.switch_backbone import SwitchBackbone
from tfmoe.models.switch_backbone.switch_backbone import ENCODER_ONLY, is_builtin_preset
from tfmoe.models.switch_text_classifier.switch_text_classifier_preprocessor import (
    SwitchTextClassifierPreprocessor,
)

POOLINGS = ("mean", "first")


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchTextClassifier(DistributedBuildMixin, keras_hub.models.TextClassifier):
    """Sequence classifier on a Switch encoder, keras-hub style.

    `SwitchBackbone(layout="encoder_only")` -> pooling over real tokens -> dropout ->
    dense head (with bias) -> float32 logits. `tfmoe.models.SwitchClassifier` is this
    class. `fit` works under `tf.distribute` strategies with dict / bool inputs
    (`DistributedBuildMixin`).

    Args:
      backbone: an encoder-only `SwitchBackbone`.
      num_classes: number of classes (defaults to `len(label_names)`).
      preprocessor: a `SwitchTextClassifierPreprocessor`, or None.
      label_names: optional class names (index = class id), saved with the task's
        config (and so in `task.json` of a preset).
      pooling: "mean" (masked mean over real tokens) or "first" (first token).
      dropout: dropout before the head (defaults to the backbone's `dropout`).
      activation: head activation (None: logits, as `compile` expects by default).

    Call: `{"token_ids", "padding_mask"}` int `[batch, seq]` -> float32
    `[batch, num_classes]`.
    """

    backbone_cls = SwitchBackbone
    preprocessor_cls = SwitchTextClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes=None,
        preprocessor=None,
        label_names=None,
        pooling="mean",
        dropout=None,
        activation=None,
        **kwargs,
    ):
        if getattr(backbone, "layout", None) != ENCODER_ONLY:
            raise ValueError(
                f"`backbone` must be a SwitchBackbone with layout='{ENCODER_ONLY}', got "
                f"{type(backbone).__name__} with layout={getattr(backbone, 'layout', None)!r}."
            )
        if label_names is not None:
            label_names = [str(name) for name in label_names]
            if num_classes is None:
                num_classes = len(label_names)
            if len(label_names) != num_classes:
                raise ValueError(
                    f"`label_names` has {len(label_names)} names for `num_classes={num_classes}`."
                )
        if num_classes is None or int(num_classes) < 1:
            raise ValueError(
                f"`num_classes` must be >= 1 (or give `label_names`), got {num_classes}."
            )
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}.")
        dropout = backbone.dropout if dropout is None else float(dropout)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.pooled_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="pooled_dropout"
        )
        self.classifier_head = keras.layers.Dense(
            int(num_classes),
            activation=activation,
            dtype=backbone.dtype_policy,
            name="classifier_head",
        )
        # === Functional model ===
        inputs = backbone.input
        hidden = backbone(inputs)
        if pooling == "first":
            pooled = hidden[:, 0]
        else:
            weights = ops.cast(inputs["padding_mask"], hidden.dtype)[:, :, None]
            pooled = ops.sum(hidden * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        outputs = ops.cast(self.classifier_head(self.pooled_dropout(pooled)), "float32")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.num_classes = int(num_classes)
        self.label_names = label_names
        self.pooling = pooling
        self.dropout = dropout
        self.activation = keras.activations.get(activation)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            label_names=self.label_names,
            pooling=self.pooling,
            dropout=self.dropout,
            activation=keras.activations.serialize(self.activation),
        )
        return config

    @classmethod
    def from_preset(cls, preset, num_classes=None, load_weights=True, **kwargs):
        """A classifier from a seq2seq tfmoe preset name or a keras-hub preset directory.

        Args:
          preset: a `"seq2seq"` registry name (its encoder, random weights; needs
            `num_classes` or `label_names`) or a directory written by `save_to_preset`
            (a `num_classes` argument there starts a new, random head, as in keras-hub).
          num_classes: number of classes (may be passed positionally).
          load_weights: load a saved preset's weights.
          **kwargs: for a registry name: `label_names`, `pooling`, `dropout`,
            `activation`, `preprocessor` or `vocabulary` (+ `sequence_length`),
            `compile`, and backbone argument overrides.
        """
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        if not is_builtin_preset(preset):
            if "num_classes" in kwargs:
                # A new head: the saved label names belong to the old one.
                kwargs.setdefault("label_names", None)
            return super().from_preset(preset, load_weights=load_weights, **kwargs)
        preset_registry.get_preset(preset, preset_registry.SEQ2SEQ)  # kind check
        task_kwargs = pop_options(
            kwargs, ("num_classes", "label_names", "pooling", "dropout", "activation", "compile")
        )
        task_kwargs["preprocessor"] = pop_preprocessor(
            kwargs, SwitchTextClassifierPreprocessor, ("sequence_length",)
        )
        config = SwitchBackbone.builtin_preset_config(preset, layout=ENCODER_ONLY, **kwargs)
        return cls(SwitchBackbone(**config), **task_kwargs)
