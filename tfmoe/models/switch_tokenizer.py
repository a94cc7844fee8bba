"""`SwitchTokenizer`: tfmoe's BERT-exact WordPiece tokenizer as a keras-hub `Tokenizer`."""

import os

import keras
import keras_hub

from tfmoe.models.preprocessing_outputs import eager_outputs, eager_text, id_tensor
from tfmoe.models.switch_backbone import SwitchBackbone, SwitchSeq2SeqBackbone
from tfmoe.tokenize import vocabulary as vocab_lib
from tfmoe.tokenize.wordpiece_tokenizer import WordpieceTokenizer

# keras-hub's file name for WordPiece vocabularies, under `assets/tokenizer/`.
VOCABULARY_FILE = "vocabulary.txt"


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchTokenizer(keras_hub.tokenizers.Tokenizer):
    """WordPiece tokenizer of the tfmoe models, in keras-hub's `Tokenizer` API.

    Tokenization is `tfmoe.tokenize.WordpieceTokenizer` unchanged (exactly the ids of
    the reference BERT tokenizer, as graph ops usable in `tf.data` and SavedModels);
    this class adds keras-hub's vocabulary assets, presets and special-token
    attributes. The vocabulary is not part of `get_config()`: `save_assets` writes it
    to `vocabulary.txt` (`assets/tokenizer/` of a preset) and `load_assets` reads it.

    Args:
      vocabulary: list of tokens or path of a one-token-per-line file; None leaves the
        tokenizer empty until `set_vocabulary` / `load_assets` (as keras-hub does when
        loading a preset).
      lowercase, strip_accents, max_chars_per_word, special_tokens_in_strings: see
        `WordpieceTokenizer`.
      sequence_length: if set, `tokenize` returns dense `[batch, sequence_length]` ids
        padded with `[PAD]`.
      end_token: token that ends a document (the causal LM data pipeline appends it,
        `generate` stops on it); `[SEP]` as in `tfmoe.data.causal_lm`.
      pad_token: padding token.
      start_token: token put before each sequence by the preprocessors, or None (the
        tfmoe data pipelines add none).

    Special ids (None before a vocabulary is set): `start_token_id`, `end_token_id`,
    `pad_token_id`, and `cls_token_id` / `sep_token_id` (`[CLS]` / `[SEP]`, as
    `tfmoe.data.classification_dataset` looks them up); `special_token_ids` lists the
    start, end and pad ids (stripped by keras-hub's `generate` post-processing).

    Call / `tokenize(inputs)`: strings `[batch]` -> int32 ids `[batch, (tokens)]`
    (a RaggedTensor in graphs, Python lists eagerly, as keras-hub tokenizers return;
    dense `[batch, sequence_length]` when set); a scalar string -> `[tokens]`.
    `detokenize(ids)`: `[batch, (tokens)]` -> `[batch]` strings (`tf.string` in
    graphs, Python `str` eagerly); see `WordpieceTokenizer.detokenize`.
    """

    backbone_cls = SwitchBackbone

    def __init__(
        self,
        vocabulary=None,
        lowercase=True,
        strip_accents=True,
        sequence_length=None,
        max_chars_per_word=100,
        special_tokens_in_strings=True,
        end_token=vocab_lib.SEP_TOKEN,
        pad_token=vocab_lib.PAD_TOKEN,
        start_token=None,
        **kwargs,
    ):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "int32"
        super().__init__(**kwargs)
        for name, token in (("end_token", end_token), ("pad_token", pad_token)):
            if not isinstance(token, str) or not token:
                raise ValueError(f"`{name}` must be a non-empty token string, got {token!r}.")
        if start_token is not None and (not isinstance(start_token, str) or not start_token):
            raise ValueError(f"`start_token` must be None or a token string, got {start_token!r}.")
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self.sequence_length = sequence_length
        self.max_chars_per_word = max_chars_per_word
        self.special_tokens_in_strings = bool(special_tokens_in_strings)
        self.start_token = start_token
        self.end_token = end_token
        self.pad_token = pad_token
        self.file_assets = [VOCABULARY_FILE]
        self.set_vocabulary(vocabulary)

    # Vocabulary ------------------------------------------------------------------------

    def set_vocabulary(self, vocabulary):
        """Sets the vocabulary (list of tokens, file path, or None to clear it).

        Raises:
          ValueError: an invalid vocabulary (`tfmoe.tokenize.load_vocabulary`), or one
            without the special tokens of this tokenizer.
        """
        self.start_token_id = self.end_token_id = self.pad_token_id = None
        if vocabulary is None:
            self._state = _WordpieceState(None)
            return
        wordpiece = WordpieceTokenizer(
            vocabulary,
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            sequence_length=self.sequence_length,
            max_chars_per_word=self.max_chars_per_word,
            special_tokens_in_strings=self.special_tokens_in_strings,
            name="wordpiece",
        )
        ids = {}
        for name in ("start_token", "end_token", "pad_token"):
            token = getattr(self, name)
            if token is None:
                continue
            try:
                ids[name] = wordpiece.token_to_id(token)
            except KeyError:
                raise ValueError(
                    f"`{name}` {token!r} is not in the vocabulary of {type(self).__name__}."
                ) from None
        self._state = _WordpieceState(wordpiece)
        for name, token_id in ids.items():
            setattr(self, f"{name}_id", token_id)

    @property
    def _wordpiece(self):
        return self._state.wordpiece

    def _check_vocabulary(self):
        if self._wordpiece is None:
            raise ValueError(
                f"{type(self).__name__} has no vocabulary: pass `vocabulary` or call "
                "`set_vocabulary` / `load_assets` first."
            )

    def get_vocabulary(self):
        """The tokens, as a list (index = id)."""
        self._check_vocabulary()
        return self._wordpiece.get_vocabulary()

    def vocabulary_size(self):
        self._check_vocabulary()
        return self._wordpiece.vocabulary_size()

    def id_to_token(self, id):
        """The token of id `id`; ValueError outside `[0, vocabulary_size)`."""
        size = self.vocabulary_size()
        if not 0 <= int(id) < size:
            raise ValueError(f"`id` must be in [0, {size}), got {id}.")
        return self._wordpiece.id_to_token(int(id))

    def token_to_id(self, token):
        """The id of `token`; ValueError if it is not in the vocabulary."""
        self._check_vocabulary()
        try:
            return self._wordpiece.token_to_id(token)
        except KeyError:
            raise ValueError(f"`token` {token!r} is not in the vocabulary.") from None

    @property
    def wordpiece(self):
        """The underlying `tfmoe.tokenize.WordpieceTokenizer` (None before a vocabulary)."""
        return self._wordpiece

    @property
    def cls_token_id(self):
        """Id of `[CLS]` (None if absent): the classifier preprocessor's first token."""
        return None if self._wordpiece is None else self._wordpiece.cls_token_id

    @property
    def sep_token_id(self):
        """Id of `[SEP]` (None if absent)."""
        return None if self._wordpiece is None else self._wordpiece.sep_token_id

    @property
    def special_tokens(self):
        """The special tokens this tokenizer uses (start, end, pad), without None."""
        return [t for t in (self.start_token, self.end_token, self.pad_token) if t is not None]

    @property
    def special_token_ids(self):
        """Ids of `special_tokens`; ValueError before a vocabulary is set."""
        self._check_vocabulary()
        return sorted({self.token_to_id(t) for t in self.special_tokens})

    # Assets ------------------------------------------------------------------------------

    def save_assets(self, dir_path):
        """Writes the vocabulary to `dir_path/vocabulary.txt`, one token per line."""
        path = os.path.join(dir_path, VOCABULARY_FILE)
        with open(path, "w", encoding="utf-8") as file:
            for token in self.get_vocabulary():
                file.write(f"{token}\n")

    def load_assets(self, dir_path):
        """Reads the vocabulary from `dir_path/vocabulary.txt`."""
        self.set_vocabulary(os.path.join(dir_path, VOCABULARY_FILE))

    # Tokenization ----------------------------------------------------------------------

    def tokenize(self, inputs):
        self._check_vocabulary()
        return eager_outputs(self._wordpiece.tokenize(inputs))

    def detokenize(self, inputs):
        self._check_vocabulary()
        return eager_text(self._wordpiece.detokenize(id_tensor(inputs)))

    def call(self, inputs, *args, training=None, **kwargs):
        return self.tokenize(inputs, *args, **kwargs)

    def compute_output_spec(self, input_spec):
        return keras.KerasTensor(tuple(input_spec.shape) + (self.sequence_length,), dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary=None,  # saved as an asset (`save_assets`)
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            sequence_length=self.sequence_length,
            max_chars_per_word=self.max_chars_per_word,
            special_tokens_in_strings=self.special_tokens_in_strings,
            start_token=self.start_token,
            end_token=self.end_token,
            pad_token=self.pad_token,
        )
        return config


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchSeq2SeqTokenizer(SwitchTokenizer):
    """`SwitchTokenizer` of seq2seq presets (same behaviour and arguments).

    keras-hub's `Tokenizer.from_preset(dir)` looks for a tokenizer class whose
    `backbone_cls` is the preset's backbone class; this one answers for
    `SwitchSeq2SeqBackbone` presets.
    """

    backbone_cls = SwitchSeq2SeqBackbone


class _WordpieceState:
    """Holds the `WordpieceTokenizer` outside Keras' state tracking.

    The vocabulary is set after the layer is built when a preset or a `.keras` file
    loads its assets; a tracked sub-layer could not be replaced then. The tokenizer
    has no weights, so nothing is lost by not tracking it.
    """

    def __init__(self, wordpiece):
        self.wordpiece = wordpiece
