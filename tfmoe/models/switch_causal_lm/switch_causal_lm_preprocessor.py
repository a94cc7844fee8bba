"""`SwitchCausalLMPreprocessor`: strings -> `SwitchCausalLM` inputs, labels and weights."""

import keras
import keras_hub
import tensorflow as tf

from tfmoe.models.preprocessing_outputs import eager_outputs
from tfmoe.models.switch_backbone import SwitchBackbone
from tfmoe.models.switch_tokenizer import SwitchTokenizer


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchCausalLMPreprocessor(keras_hub.models.CausalLMPreprocessor):
    """keras-hub causal LM preprocessing with `SwitchTokenizer`.

    Each string is tokenized, followed by the tokenizer's `end_token` (`[SEP]`, the
    end-of-document id of `tfmoe.data.causal_lm`), truncated and padded to
    `sequence_length + 1` tokens with keras-hub's `StartEndPacker` (which keeps the
    end token of a truncated string); a `start_token` is added only when the
    tokenizer has one (tfmoe's vocabularies have none). Then inputs are positions
    `0 .. sequence_length - 1` and labels positions `1 .. sequence_length`.

    Args:
      tokenizer: a `SwitchTokenizer`.
      sequence_length: model sequence length.
      add_start_token, add_end_token: add the tokenizer's start / end token.

    Call arguments:
      x: strings `[batch]` (or a scalar string).
      y, sample_weight: must be None (labels come from `x`).
      sequence_length: overrides `sequence_length` for this call.

    Returns:
      `(x, y, sample_weight)`: x `{"token_ids": int32 [batch, sequence_length],
      "padding_mask": bool [batch, sequence_length]}`, y int32 next tokens
      `[batch, sequence_length]`, sample_weight bool `[batch, sequence_length]`
      (false where the label is padding).

    `generate_preprocess(x, sequence_length)` packs prompts without the end token
    (strings), or pads an already tokenized `{"token_ids", "padding_mask"}` dict to
    `sequence_length`; `generate_postprocess` turns generated ids back into strings.
    """

    backbone_cls = SwitchBackbone
    tokenizer_cls = SwitchTokenizer

    def call(self, x, y=None, sample_weight=None, sequence_length=None):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
            super().call(x, y, sample_weight, sequence_length=sequence_length)
        )
        # Inputs are real where their label is, as in `tfmoe.data.causal_lm_dataset`:
        # the input position holding the end token (label: padding) is padding, so it
        # takes no expert capacity and adds nothing to the MoE losses.
        padding_mask = tf.cast(sample_weight, tf.bool)
        token_ids = tf.where(padding_mask, x["token_ids"], self.tokenizer.pad_token_id)
        x = {"token_ids": token_ids, "padding_mask": padding_mask}
        return eager_outputs(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))

    def generate_preprocess(self, x, sequence_length=None):
        """Prompts -> `{"token_ids", "padding_mask"}` `[batch, sequence_length]`.

        `x`: strings, or a dict of token ids `[batch, seq]` (right-padded) with an
        optional `padding_mask`, padded here to `sequence_length` with the pad id.
        """
        if isinstance(x, dict):
            return self._pad_token_ids(x, sequence_length or self.sequence_length)
        return super().generate_preprocess(x, sequence_length=sequence_length)

    def _pad_token_ids(self, x, sequence_length):
        if "token_ids" not in x:
            raise ValueError(f"`x` must have a 'token_ids' key, got keys {sorted(x)}.")
        token_ids = tf.cast(tf.convert_to_tensor(x["token_ids"]), tf.int32)
        if token_ids.shape.rank != 2:
            raise ValueError(f"`token_ids` must be [batch, seq], got shape {token_ids.shape}.")
        padding_mask = x.get("padding_mask")
        padding_mask = (
            tf.ones_like(token_ids, tf.bool)
            if padding_mask is None
            else tf.cast(tf.convert_to_tensor(padding_mask), tf.bool)
        )
        length = token_ids.shape[1]
        if length is not None and length > sequence_length:
            raise ValueError(
                f"`sequence_length` ({sequence_length}) is shorter than the prompt ids ({length})."
            )
        pad = sequence_length - tf.shape(token_ids)[1]
        padding_mask = tf.pad(padding_mask, [[0, 0], [0, pad]], constant_values=False)
        token_ids = tf.pad(token_ids, [[0, 0], [0, pad]])
        token_ids = tf.where(padding_mask, token_ids, self.tokenizer.pad_token_id)
        return eager_outputs({"token_ids": token_ids, "padding_mask": padding_mask})
