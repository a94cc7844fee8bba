"""`SwitchTextClassifierPreprocessor`: strings -> `SwitchTextClassifier` inputs."""

import keras
import keras_hub

from tfmoe.models.switch_backbone import SwitchBackbone
from tfmoe.models.switch_tokenizer import SwitchTokenizer


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchTextClassifierPreprocessor(keras_hub.models.TextClassifierPreprocessor):
    """keras-hub text classification preprocessing with `SwitchTokenizer`.

    Each string becomes `[CLS] tokens [SEP]` (each only when the vocabulary has it),
    truncated to `sequence_length` keeping the `[SEP]`, and padded with `[PAD]`: the
    layout of `tfmoe.data.classification_dataset`. One text segment per example
    (the backbone has no segment ids).

    Args:
      tokenizer: a `SwitchTokenizer`.
      sequence_length: model sequence length.

    Call arguments:
      x: strings `[batch]` (or a 1-tuple of them).
      y, sample_weight: passed through.

    Returns:
      `(x, y, sample_weight)` (packed as keras does): x `{"token_ids": int32
      [batch, sequence_length], "padding_mask": bool [batch, sequence_length]}`.
    """

    backbone_cls = SwitchBackbone
    tokenizer_cls = SwitchTokenizer

    def build(self, input_shape):
        self.packer = keras_hub.layers.StartEndPacker(
            start_value=self.tokenizer.cls_token_id,
            end_value=self.tokenizer.sep_token_id,
            pad_value=self.tokenizer.pad_token_id,
            sequence_length=self.sequence_length,
            return_padding_mask=True,
        )
        self.built = True

    def call(self, x, y=None, sample_weight=None):
        if isinstance(x, tuple):
            if len(x) != 1:
                raise ValueError(
                    f"{type(self).__name__} takes one text segment per example, got {len(x)}."
                )
            (x,) = x
        if not self.built:
            self.build(None)
        token_ids, padding_mask = self.packer(self.tokenizer(x))
        x = {"token_ids": token_ids, "padding_mask": padding_mask}
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
