"""`WordpieceTokenizer`: BERT WordPiece as a Keras layer on `tf_text.FastWordpieceTokenizer`.

With the BERT uncased vocabulary it gives exactly the ids of the reference
Hugging Face tokenizer (`bert_uncased_tokenizer.json`, without added [CLS]/[SEP]).

How a batch is tokenized (graph ops: runs in `tf.data`, `tf.function`, SavedModel):

1. Plain rows (`recoding.plain_rows_pattern`: ASCII and a few common characters
   normalisation leaves alone, no special token, no over-long word) are
   lower-cased (ASCII) and nothing else.
2. The other rows are normalised as the reference does (cleaning, NFD and mark
   stripping with ICU, lower case) and recoded (`recoding`) so that end-to-end
   FastWordpiece splits their words as the reference does, counts characters
   rather than bytes, and sees their special tokens.
3. One end-to-end FastWordpiece, over the vocabulary and its recoded copy,
   tokenizes all rows; recoded tokens map back to their ids.

The graph has a few dozen ops and no conditionals. Every new graph that holds the
tokenizer (each `tf.data` pipeline, `tf.function`, export) optimises and
instantiates all of them when it starts, so that start-up grows with their number.
The graph is traced once per tokenizer and shared. Eager calls on plain text run
two ops and skip Keras' per-call work.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfmoe.tokenize import vocabulary as vocab_lib
from tfmoe.tokenize.recoding import Recoding, plain_rows_pattern, plain_rows_python_regex
from tfmoe.tokenize.tokenizer_layer import TokenizerLayer

# Recoded text holds every word character in 4 UTF-8 bytes (see `recoding`).
_RECODED_BYTES_PER_CHARACTER = 4
# Eager batches this small, of rows this short, are checked for plain rows in Python.
_PYTHON_CHECK_MAX_ROWS = 16
_PYTHON_CHECK_MAX_BYTES = 1000


# Graph code below branches on Python values only: autograph would just cost seconds of tracing.
@keras.saving.register_keras_serializable(package="tfmoe")
class WordpieceTokenizer(TokenizerLayer):
    """BERT WordPiece tokenizer layer (string -> int32 ids), exact with the reference.

    Args:
      vocabulary: list of tokens, or path of a one-token-per-line file. Must hold
        `[UNK]`; `[PAD]`, `[CLS]`, `[SEP]`, `[MASK]` and the `[unusedN]` sentinels
        are used when present (see `tfmoe.tokenize.vocabulary`).
      lowercase: lower-case as BERT does (per character, not NFKC case folding).
      strip_accents: NFD and deletion of non-spacing marks.
      sequence_length: if set, outputs are dense `[batch, sequence_length]`,
        truncated or padded with the `[PAD]` id.
      max_chars_per_word: longer words (in characters) become `[UNK]`.
      special_tokens_in_strings: recognise `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`,
        `[MASK]` written in the raw text as those tokens, as the reference tokenizer
        does. Set False for untrusted text (then `[SEP]` is `[`, `sep`, `]`).

    Call:
      `inputs`: a Python string or list of strings, or a `tf.string` tensor of any
      rank. Returns int32 ids: for `[batch]` inputs a RaggedTensor
      `[batch, (tokens)]` (dense `[batch, sequence_length]` when set); for a scalar,
      a dense `[tokens]` (or `[sequence_length]`). Higher ranks add ragged dims.
    """

    def __init__(
        self,
        vocabulary,
        lowercase=True,
        strip_accents=True,
        sequence_length=None,
        max_chars_per_word=100,
        special_tokens_in_strings=True,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        # Raw strings in, TF tensors through (not converted to backend tensors).
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._vocabulary = vocab_lib.load_vocabulary(vocabulary)
        if sequence_length is not None and (
            isinstance(sequence_length, bool)
            or not isinstance(sequence_length, int)
            or sequence_length < 1
        ):
            raise ValueError(
                f"`sequence_length` must be a positive int or None, got {sequence_length!r}"
            )
        if (
            isinstance(max_chars_per_word, bool)
            or not isinstance(max_chars_per_word, int)
            or max_chars_per_word < 1
        ):
            raise ValueError(
                f"`max_chars_per_word` must be a positive int, got {max_chars_per_word!r}"
            )
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self.sequence_length = sequence_length
        self.max_chars_per_word = max_chars_per_word
        self.special_tokens_in_strings = bool(special_tokens_in_strings)
        self._token_to_id = {token: i for i, token in enumerate(self._vocabulary)}
        if sequence_length is not None and self.pad_token_id is None:
            raise ValueError(
                f"`sequence_length` needs a {vocab_lib.PAD_TOKEN!r} token in `vocabulary`"
            )
        self._special_tokens = [t for t in vocab_lib.SPECIAL_TOKENS if t in self._token_to_id]
        self._match_special_tokens = self.special_tokens_in_strings and bool(self._special_tokens)
        # Plain rows need no more normalisation than ASCII lower-casing; the others
        # are recoded (see `recoding`). One FastWordpiece reads both.
        self._plain_pattern = plain_rows_pattern(max_chars_per_word)
        self._plain_python_regex = plain_rows_python_regex(max_chars_per_word)
        specials = self._special_tokens if self._match_special_tokens else []
        self._special_token_bytes = [t.encode() for t in specials]
        self._contains_special_token = (
            "(?s).*(?:" + "|".join(rf"\Q{t}\E" for t in specials) + ").*" if specials else None
        )
        self._recoding = Recoding(
            self.lowercase,
            self.strip_accents,
            self._special_tokens if self._match_special_tokens else (),
            self._vocabulary,
        )
        wordpieces, ids = self._recoding.vocabulary(self._vocabulary, vocab_lib.SUFFIX_INDICATOR)
        self._end_to_end = tf_text.FastWordpieceTokenizer(
            wordpieces,
            suffix_indicator=vocab_lib.SUFFIX_INDICATOR,
            max_bytes_per_word=max_chars_per_word * _RECODED_BYTES_PER_CHARACTER,
            token_out_type=tf.int32,
            unknown_token=vocab_lib.UNKNOWN_TOKEN,
        )
        with tf.init_scope():
            # Eager, so that graphs capture it instead of each holding a copy.
            self._wordpiece_ids = tf.constant(ids, tf.int32)
        # Plain rows only match tokens as they are; when those keep their ids, the
        # FastWordpiece ids of plain rows need no mapping.
        self._plain_ids_are_ids = wordpieces[: len(self._vocabulary)] == self._vocabulary
        self._detokenizer = None  # built on first use: detokenization makes a bigger model
        # Traced once, on first use: every graph that tokenizes calls it, and so do
        # eager calls on rows that are not plain.
        self._tokenize_batch_graph = tf.function(
            self._tokenize_batch,
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )
        self.built = True

    # Vocabulary and special tokens.

    def _optional_id(self, token):
        return self._token_to_id.get(token)

    @property
    def pad_token_id(self):
        return self._optional_id(vocab_lib.PAD_TOKEN)

    @property
    def unknown_token_id(self):
        return self._token_to_id[vocab_lib.UNKNOWN_TOKEN]

    @property
    def cls_token_id(self):
        return self._optional_id(vocab_lib.CLS_TOKEN)

    @property
    def sep_token_id(self):
        return self._optional_id(vocab_lib.SEP_TOKEN)

    @property
    def mask_token_id(self):
        return self._optional_id(vocab_lib.MASK_TOKEN)

    @property
    def sentinel_token_ids(self):
        """Ids of the span-corruption sentinels `[unused0]`, `[unused1]`, ... (tuple of int)."""
        return vocab_lib.sentinel_token_ids(self._vocabulary)

    @property
    def special_token_ids(self):
        """Ids of the special tokens present, `[PAD]` `[UNK]` `[CLS]` `[SEP]` `[MASK]` order."""
        return tuple(self._token_to_id[t] for t in self._special_tokens)

    # Tokenization.

    def _tokenize_flat(self, text):
        if tf.executing_eagerly():
            return self._tokenize_eagerly(text)
        # The traced graph is shared by every graph that tokenizes (each tf.data
        # pipeline, tf.function, export) instead of traced again.
        return self._tokenize_batch_graph(text)

    def _tokenize_eagerly(self, text):
        """Eager `[n]` -> `[n, (tokens)]`: plain batches in two ops, others in the traced graph."""
        if self._plain_ids_are_ids and self._all_plain_eagerly(text):
            normalized = tf.strings.lower(text) if self.lowercase else text
            return self._end_to_end.tokenize(normalized).with_row_splits_dtype(tf.int64)
        return self._tokenize_batch_graph(text)

    def _all_plain_eagerly(self, text):
        """Whether every row of the eager `[n]` `text` is plain (`_plain_rows`)."""
        if self._plain_pattern is None:
            return False
        if text.shape[0] > _PYTHON_CHECK_MAX_ROWS:
            return bool(np.all(self._plain_rows(text).numpy()))
        # A few rows: Python answers faster than eager TF ops.
        for row in text.numpy():
            if any(token in row for token in self._special_token_bytes):
                return False
            if len(row) > _PYTHON_CHECK_MAX_BYTES:
                return bool(np.all(self._plain_rows(text).numpy()))
            try:
                if not self._plain_python_regex.fullmatch(row.decode("utf-8")):
                    return False
            except UnicodeDecodeError:
                return False
        return True

    def _tokenize_batch(self, text):
        """`[n]` strings -> `[n, (tokens)]` int32, int64 row splits."""
        normalized = tf.strings.lower(text) if self.lowercase else text
        # The other rows, recoded (on none at all, their ops cost next to nothing).
        rows = tf.where(tf.logical_not(self._plain_rows(text)))
        normalized = tf.tensor_scatter_nd_update(
            normalized, rows, self._recoding.recode(tf.gather_nd(text, rows))
        )
        ids = self._end_to_end.tokenize(normalized)
        return tf.RaggedTensor.from_row_splits(
            tf.gather(self._wordpiece_ids, ids.flat_values), ids.row_splits, validate=False
        )

    def _plain_rows(self, text):
        """bool `[n]`: the rows that need no recoding (`recoding.plain_rows_pattern`), without special tokens."""
        if self._plain_pattern is None:
            # Too many characters per word for one RE2 repetition: no row is plain.
            return tf.zeros_like(text, tf.bool)
        plain = tf.strings.regex_full_match(text, self._plain_pattern)
        if self._contains_special_token:
            special = tf.strings.regex_full_match(text, self._contains_special_token)
            plain = tf.logical_and(plain, tf.logical_not(special))
        return plain

    @tf.autograph.experimental.do_not_convert
    def detokenize(self, ids):
        """Ids -> text: `[batch, (tokens)]` (ragged or dense) -> `[batch]`; `[tokens]` -> scalar.

        `[PAD]`, `[CLS]` and `[SEP]` are dropped, `##` pieces are glued to the
        previous one, words are joined by single spaces. Not an exact inverse:
        normalisation is lost, punctuation is spaced out (`a , b`), unknown
        words and ids outside the vocabulary read `[UNK]`.
        """
        if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple)):
            ids = tf.ragged.constant(ids, dtype=tf.int32)
        elif not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"`ids` must be integer token ids, got dtype {ids.dtype.name}")
        if ids.shape.rank not in (1, 2):
            raise ValueError(f"`ids` must have rank 1 or 2, got shape {ids.shape}")
        single = ids.shape.rank == 1
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids[None] if single else ids)
        ids = tf.cast(ids, tf.int32)
        # Ids outside the vocabulary (a model's output layer may be padded to a round
        # size) read `[UNK]`: tf-text's detokenizer would read past its table.
        known = (ids.flat_values >= 0) & (ids.flat_values < len(self._vocabulary))
        ids = ids.with_flat_values(tf.where(known, ids.flat_values, self.unknown_token_id))
        if self._detokenizer is None:
            # Built outside any tf.function being traced: created inside one, its model
            # constant would belong to that graph and break later eager calls.
            with tf.init_scope():
                self._detokenizer = tf_text.FastWordpieceTokenizer(
                    self._vocabulary,
                    suffix_indicator=vocab_lib.SUFFIX_INDICATOR,
                    token_out_type=tf.int32,
                    unknown_token=vocab_lib.UNKNOWN_TOKEN,
                    no_pretokenization=True,
                    support_detokenization=True,
                )
        dropped = [
            i for i in (self.pad_token_id, self.cls_token_id, self.sep_token_id) if i is not None
        ]
        if dropped:
            keep = tf.reduce_all(
                tf.not_equal(ids.flat_values[:, None], tf.constant(dropped, tf.int32)), axis=1
            )
            ids = tf.ragged.boolean_mask(ids, ids.with_flat_values(keep))
        text = self._detokenizer.detokenize(ids)
        return text[0] if single else text

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary=self.get_vocabulary(),
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            sequence_length=self.sequence_length,
            max_chars_per_word=self.max_chars_per_word,
            special_tokens_in_strings=self.special_tokens_in_strings,
        )
        return config
