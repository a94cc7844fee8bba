"""`SwitchSentencePieceTokenizer`: T5's SentencePiece tokenizer as a keras-hub `Tokenizer`.

The tokenizer of converted Hugging Face Switch checkpoints (`tfmoe.convert`): their
`spiece.model`, with T5's sentinels, in keras-hub's `Tokenizer` API so that it saves and
loads with a `SwitchSeq2SeqLM` preset (`assets/tokenizer/spiece.model`).
"""

import os

import keras
import keras_hub

from tfmoe.models.preprocessing_outputs import eager_outputs, eager_text, id_tensor
from tfmoe.models.switch_backbone import SwitchSeq2SeqBackbone
from tfmoe.tokenize.sentencepiece_tokenizer import SentencePieceTokenizer

# File name of the SentencePiece model: a Hugging Face T5 checkpoint's, and the asset's.
SPIECE_FILE = "spiece.model"


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchSentencePieceTokenizer(keras_hub.tokenizers.Tokenizer):
    """T5 SentencePiece tokenizer of seq2seq presets (`tfmoe.tokenize.SentencePieceTokenizer`).

    Tokenization is `tfmoe.tokenize.SentencePieceTokenizer` unchanged (the ids of
    `transformers`' T5 tokenizer, as graph ops); this class adds keras-hub's assets and
    special-token attributes. The model is not part of `get_config()`: `save_assets`
    writes it to `spiece.model` (`assets/tokenizer/` of a preset), `load_assets` reads it.

    Args:
      proto: path of a `spiece.model` file or its bytes; None leaves the tokenizer empty
        until `set_proto` / `load_assets` (as keras-hub does when loading a preset).
      extra_ids: number of T5 sentinels `<extra_id_N>` after the pieces (T5: 100).
      special_tokens_in_strings: read `</s>`, `<extra_id_N>`, ... written in the text as
        those tokens (see `tfmoe.tokenize.SentencePieceTokenizer`).

    Special ids (None before a model is set): `pad_token_id` (`<pad>`, also the decoder
    start), `end_token_id` (`</s>`), `start_token_id` (None: T5 puts no start token);
    `special_token_ids` are pad and end (stripped by keras-hub's `generate`). For the
    classifier preprocessor, `cls_token_id` is None and `sep_token_id` is `</s>`.

    Call / `tokenize(inputs)`: strings `[batch]` -> int32 ids `[batch, (tokens)]` (no
    `</s>`: the preprocessors append it); `detokenize(ids)` -> `[batch]` strings.
    """

    backbone_cls = SwitchSeq2SeqBackbone

    def __init__(self, proto=None, extra_ids=100, special_tokens_in_strings=True, **kwargs):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "int32"
        super().__init__(**kwargs)
        self.extra_ids = int(extra_ids)
        self.special_tokens_in_strings = bool(special_tokens_in_strings)
        self.file_assets = [SPIECE_FILE]
        self.set_proto(proto)

    def set_proto(self, proto):
        """Sets the SentencePiece model (`spiece.model` path or bytes; None clears it)."""
        self.start_token_id = self.end_token_id = self.pad_token_id = None
        self._state = _State(None)
        if proto is None:
            return
        layer = SentencePieceTokenizer(
            proto,
            extra_ids=self.extra_ids,
            special_tokens_in_strings=self.special_tokens_in_strings,
            name="sentencepiece",
        )
        self._state = _State(layer)
        self.end_token_id = layer.eos_token_id
        self.pad_token_id = layer.pad_token_id

    @property
    def sentencepiece(self):
        """The underlying `tfmoe.tokenize.SentencePieceTokenizer` (None before a model)."""
        return self._state.layer

    @property
    def cls_token_id(self):
        """None: T5 inputs start with no class token."""
        return None

    @property
    def sep_token_id(self):
        """`</s>`, which ends T5 inputs (None before a model is set)."""
        return self.end_token_id

    def _check_model(self):
        if self.sentencepiece is None:
            raise ValueError(
                f"{type(self).__name__} has no SentencePiece model: pass "
                "`proto` or call `set_proto` / `load_assets` first."
            )

    @property
    def special_token_ids(self):
        """Pad and end ids."""
        self._check_model()
        return sorted({self.pad_token_id, self.end_token_id})

    def get_vocabulary(self):
        self._check_model()
        return self.sentencepiece.get_vocabulary()

    def vocabulary_size(self):
        self._check_model()
        return self.sentencepiece.vocabulary_size()

    def id_to_token(self, id):
        self._check_model()
        return self.sentencepiece.id_to_token(int(id))

    def token_to_id(self, token):
        self._check_model()
        try:
            return self.sentencepiece.token_to_id(token)
        except KeyError:
            raise ValueError(f"`token` {token!r} is not in the vocabulary.") from None

    # Assets ------------------------------------------------------------------------------

    def save_assets(self, dir_path):
        """Writes the SentencePiece model to `dir_path/spiece.model`."""
        self._check_model()
        with open(os.path.join(dir_path, SPIECE_FILE), "wb") as file:
            file.write(self.sentencepiece.proto)

    def load_assets(self, dir_path):
        """Reads the SentencePiece model from `dir_path/spiece.model`."""
        self.set_proto(os.path.join(dir_path, SPIECE_FILE))

    # Tokenization ----------------------------------------------------------------------

    def tokenize(self, inputs):
        self._check_model()
        return eager_outputs(self.sentencepiece.tokenize(inputs))

    def detokenize(self, inputs):
        self._check_model()
        return eager_text(self.sentencepiece.detokenize(id_tensor(inputs)))

    def call(self, inputs, *args, training=None, **kwargs):
        return self.tokenize(inputs, *args, **kwargs)

    def compute_output_spec(self, input_spec):
        return keras.KerasTensor(tuple(input_spec.shape) + (None,), dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(
            proto=None,  # saved as an asset (`save_assets`)
            extra_ids=self.extra_ids,
            special_tokens_in_strings=self.special_tokens_in_strings,
        )
        return config


class _State:
    """Holds the tokenizer layer outside Keras' state tracking (it is replaced when a
    preset loads its assets, after the layer is built; it has no weights)."""

    def __init__(self, layer):
        self.layer = layer
