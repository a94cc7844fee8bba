"""`SwitchSeq2SeqLMPreprocessor`: text pairs -> `SwitchSeq2SeqLM` inputs, labels, weights."""

import keras
import keras_hub

from tfmoe.models.switch_backbone import SwitchSeq2SeqBackbone
from tfmoe.models.switch_tokenizer import SwitchSeq2SeqTokenizer


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchSeq2SeqLMPreprocessor(keras_hub.models.Seq2SeqLMPreprocessor):
    """keras-hub seq2seq preprocessing with `SwitchTokenizer`, in the T5 layout.

    Encoder: `tokens [SEP]` (the tokenizer's end token, as `tfmoe.data`'s span
    corruption appends it), truncated keeping the end token, padded with `[PAD]`.
    Decoder: the start token (the pad id, T5's and `SwitchTransformer`'s
    `decoder_start_token_id`), then `tokens [SEP]`; labels are the decoder tokens
    shifted left by one.

    Args:
      tokenizer: a `SwitchTokenizer` (or its `SwitchSeq2SeqTokenizer` subclass).
      encoder_sequence_length, decoder_sequence_length: model sequence lengths.

    Call arguments:
      x: `{"encoder_text": [batch], "decoder_text": [batch]}` strings.
      y, sample_weight: must be None (labels come from `decoder_text`).

    Returns:
      `(x, y, sample_weight)`: x with `encoder_token_ids`, `encoder_padding_mask`
      `[batch, encoder_sequence_length]` and `decoder_token_ids`,
      `decoder_padding_mask` `[batch, decoder_sequence_length]`; y the next decoder
      tokens; sample_weight false where the label is padding.

    `generate_preprocess(x)` takes source strings (or the dict with a decoder prompt)
    and packs the decoder prompt after the start token without an end token.
    """

    backbone_cls = SwitchSeq2SeqBackbone
    tokenizer_cls = SwitchSeq2SeqTokenizer

    def build(self, input_shape):
        self.encoder_packer = keras_hub.layers.StartEndPacker(
            start_value=None,
            end_value=self.tokenizer.end_token_id,
            pad_value=self.tokenizer.pad_token_id,
            sequence_length=self.encoder_sequence_length,
            return_padding_mask=True,
        )
        self.decoder_packer = keras_hub.layers.StartEndPacker(
            start_value=self.tokenizer.pad_token_id,
            end_value=self.tokenizer.end_token_id,
            pad_value=self.tokenizer.pad_token_id,
            sequence_length=self.decoder_sequence_length,
            return_padding_mask=True,
        )
        self.built = True

    def get_config(self):
        # keras-hub's `Seq2SeqLMPreprocessor` does not save its lengths: a preset would
        # come back with its 1024-token defaults.
        config = super().get_config()
        config.update(
            encoder_sequence_length=self.encoder_sequence_length,
            decoder_sequence_length=self.decoder_sequence_length,
        )
        return config
