"""`WordpieceTokenizer`: BERT WordPiece as a Keras layer on `tf_text.FastWordpieceTokenizer`.

With the BERT uncased vocabulary it gives exactly the ids of the reference
Hugging Face tokenizer (`bert_uncased_tokenizer.json`, without added [CLS]/[SEP]).

How a batch is tokenized (all graph ops: runs in `tf.data`, `tf.function`, SavedModel):

1. `normalize_text` (clean, strip accents, lower-case) with the reference's
   character tables; rows of ASCII and characters normalisation leaves alone
   take a cheap path.
2. End-to-end FastWordpiece (its own whitespace/punctuation/CJK splitting and
   WordPiece in one pass) on every row.
3. Rows that step 2 may get wrong are tokenized again on an exact path: split on
   special tokens, the reference's word splitting (`split_words`), FastWordpiece
   per word, and `[UNK]` for words over `max_chars_per_word` *characters*
   (FastWordpiece counts bytes). Those rows are the ones with a special token
   in the raw text, with invalid UTF-8 (RE2 cannot look for special tokens
   there), with a character FastWordpiece splits differently
   (`charsets.FAST_WORDPIECE_DISAGREES`), and the non-ASCII rows that got an
   `[UNK]` (which is how an over-long multi-byte word shows). English text
   rarely needs it.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfmoe.tokenize import charsets, vocabulary as vocab_lib
from tfmoe.tokenize.normalization import (
    PLAIN_ASCII_PATTERN,
    contains_pattern,
    normalize_text,
    normalize_text_and_flag,
    replace_invalid_utf8,
)
from tfmoe.tokenize.pretokenization import special_tokens_pattern, split_special_tokens, split_words

_MAX_BYTES_PER_CHARACTER = 4
_DISAGREEING_CHARACTERS = contains_pattern(charsets.FAST_WORDPIECE_DISAGREES)


def replace_rows(ragged, row_indices, new_rows):
    """Returns `ragged` (`[n, (k)]`) with rows `row_indices` (`[m]`) replaced by `new_rows` (`[m, (k)]`)."""
    n = ragged.nrows(out_type=tf.int64)
    row_indices = tf.cast(row_indices, tf.int64)
    new_rows = new_rows.with_row_splits_dtype(ragged.row_splits.dtype)
    source = tf.tensor_scatter_nd_update(
        tf.range(n), row_indices[:, None], n + tf.range(tf.size(row_indices, out_type=tf.int64))
    )
    return tf.gather(tf.concat([ragged, new_rows], axis=0), source)


def _single_id_rows(token_id, count):
    """`[count, (1)]` ragged rows holding `token_id`."""
    return tf.RaggedTensor.from_row_lengths(
        tf.fill([count], tf.cast(token_id, tf.int32)), tf.ones([count], tf.int64), validate=False
    )


# Graph code below branches on Python values only: autograph would just cost seconds of tracing.
@keras.saving.register_keras_serializable(package="tfmoe")
class WordpieceTokenizer(keras.layers.Layer):
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
            isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1
        ):
            raise ValueError(f"`sequence_length` must be a positive int or None, got {sequence_length!r}")
        if isinstance(max_chars_per_word, bool) or not isinstance(max_chars_per_word, int) or max_chars_per_word < 1:
            raise ValueError(f"`max_chars_per_word` must be a positive int, got {max_chars_per_word!r}")
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self.sequence_length = sequence_length
        self.max_chars_per_word = max_chars_per_word
        self.special_tokens_in_strings = bool(special_tokens_in_strings)
        self._token_to_id = {token: i for i, token in enumerate(self._vocabulary)}
        if sequence_length is not None and self.pad_token_id is None:
            raise ValueError(f"`sequence_length` needs a {vocab_lib.PAD_TOKEN!r} token in `vocabulary`")
        self._special_tokens = [t for t in vocab_lib.SPECIAL_TOKENS if t in self._token_to_id]
        self._match_special_tokens = self.special_tokens_in_strings and bool(self._special_tokens)
        self._contains_special_token = "(?s).*(?:" + special_tokens_pattern(self._special_tokens) + ").*"
        self._end_to_end = tf_text.FastWordpieceTokenizer(
            self._vocabulary,
            suffix_indicator=vocab_lib.SUFFIX_INDICATOR,
            max_bytes_per_word=max_chars_per_word,
            token_out_type=tf.int32,
            unknown_token=vocab_lib.UNKNOWN_TOKEN,
        )
        self._per_word = tf_text.FastWordpieceTokenizer(
            self._vocabulary,
            suffix_indicator=vocab_lib.SUFFIX_INDICATOR,
            max_bytes_per_word=max_chars_per_word * _MAX_BYTES_PER_CHARACTER,
            token_out_type=tf.int32,
            unknown_token=vocab_lib.UNKNOWN_TOKEN,
            no_pretokenization=True,
        )
        self._detokenizer = None  # built on first use: detokenization makes a bigger model
        # Eager calls run one compiled graph instead of ~100 eager ops.
        self._tokenize_batch_graph = tf.function(
            self._tokenize_batch, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
        )
        self.built = True

    # Vocabulary and special tokens.

    def get_vocabulary(self):
        """The tokens, as a list (index = id)."""
        return list(self._vocabulary)

    def vocabulary_size(self):
        return len(self._vocabulary)

    def token_to_id(self, token):
        """Id of `token`; raises `KeyError` if it is not in the vocabulary."""
        return self._token_to_id[token]

    def id_to_token(self, token_id):
        return self._vocabulary[token_id]

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

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs):
        return self.tokenize(inputs)

    @tf.autograph.experimental.do_not_convert
    def tokenize(self, inputs):
        """Strings -> int32 ids (see the class docstring for shapes)."""
        text = _as_string_tensor(inputs, "inputs")
        tokenize_batch = self._tokenize_batch_graph if tf.executing_eagerly() else self._tokenize_batch
        flat_ids = tokenize_batch(tf.reshape(text, [-1]))
        if self.sequence_length is not None:
            dense = flat_ids.to_tensor(default_value=self.pad_token_id, shape=[None, self.sequence_length])
            return tf.reshape(dense, tf.concat([tf.shape(text), [self.sequence_length]], axis=0))
        if text.shape.rank == 0:
            return flat_ids[0]
        ids = flat_ids
        for size in reversed(text.shape[1:]):
            ids = tf.RaggedTensor.from_uniform_row_length(ids, size)
        return ids

    def _tokenize_batch(self, text):
        """`[n]` strings -> `[n, (tokens)]` int32."""
        normalized, short_path = normalize_text_and_flag(
            text,
            self.lowercase,
            self.strip_accents,
            pad_cjk=False,
            exact_whitespace=False,
            # Rows that may hold a special token ("[...]") take the long path and get checked.
            short_path_excludes="".join(t[0] for t in self._special_tokens) if self._match_special_tokens else "",
        )
        ids = self._end_to_end.tokenize(normalized)
        has_unknown = tf.reduce_any(tf.equal(ids, self.unknown_token_id), axis=1)
        candidates = tf.logical_or(has_unknown, tf.logical_not(short_path))
        suspect = tf.cond(
            tf.reduce_any(candidates),
            lambda: self._needs_exact_path(text, normalized, short_path, has_unknown, candidates),
            lambda: tf.zeros_like(candidates),
        )

        def retokenize():
            rows = tf.where(suspect)[:, 0]
            return replace_rows(ids, rows, self._tokenize_exactly(tf.gather(text, rows)))

        return tf.cond(tf.reduce_any(suspect), retokenize, lambda: ids)

    def _needs_exact_path(self, text, normalized, short_path, has_unknown, candidates):
        """`bool [n]`: the rows end-to-end FastWordpiece may have got wrong (checks `candidates` only)."""
        rows = tf.where(candidates)
        text, normalized = tf.gather_nd(text, rows), tf.gather_nd(normalized, rows)
        long_path = tf.logical_not(tf.gather_nd(short_path, rows))
        # An [UNK] outside plain ASCII may be a word of <= max_chars_per_word
        # characters but more bytes, which the reference does split.
        suspect = tf.logical_and(
            tf.gather_nd(has_unknown, rows),
            tf.logical_not(tf.strings.regex_full_match(normalized, PLAIN_ASCII_PATTERN)),
        )
        # Characters FastWordpiece splits differently (never on the short path).
        suspect |= long_path & tf.strings.regex_full_match(normalized, _DISAGREEING_CHARACTERS)
        if self._match_special_tokens:
            # RE2 matches nothing in invalid UTF-8: such rows take the exact path too.
            invalid = tf.logical_not(tf.strings.regex_full_match(text, "(?s).*"))
            suspect |= long_path & (invalid | tf.strings.regex_full_match(text, self._contains_special_token))
        return tf.scatter_nd(rows, suspect, tf.shape(candidates, out_type=tf.int64))

    def _tokenize_exactly(self, text):
        """The slow, exact path: `[m]` raw strings -> `[m, (tokens)]` int32."""
        text = replace_invalid_utf8(text)
        if self._match_special_tokens:
            segments = split_special_tokens(text, self._special_tokens)
        else:
            segments = tf.RaggedTensor.from_uniform_row_length(text, 1, validate=False)
        pieces = segments.flat_values
        words = split_words(normalize_text(pieces, lowercase=self.lowercase, strip_accents=self.strip_accents))
        word_ids = self._per_word.tokenize(words.flat_values)
        too_long = tf.where(tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_chars_per_word)[:, 0]
        word_ids = replace_rows(word_ids, too_long, _single_id_rows(self.unknown_token_id, tf.size(too_long)))
        piece_ids = tf.RaggedTensor.from_row_splits(word_ids, words.row_splits, validate=False).merge_dims(1, 2)
        if self._match_special_tokens:
            matches = tf.equal(pieces[:, None], tf.constant(self._special_tokens)[None, :])
            special_rows = tf.where(tf.reduce_any(matches, axis=1))[:, 0]
            which = tf.argmax(tf.cast(tf.gather(matches, special_rows), tf.int32), axis=1)
            special_ids = tf.gather(tf.constant(self.special_token_ids, tf.int32), which)
            piece_ids = replace_rows(
                piece_ids,
                special_rows,
                tf.RaggedTensor.from_row_lengths(special_ids, tf.ones_like(special_rows), validate=False),
            )
        return tf.RaggedTensor.from_row_splits(piece_ids, segments.row_splits, validate=False).merge_dims(1, 2)

    @tf.autograph.experimental.do_not_convert
    def detokenize(self, ids):
        """Ids -> text: `[batch, (tokens)]` (ragged or dense) -> `[batch]`; `[tokens]` -> scalar.

        `[PAD]`, `[CLS]` and `[SEP]` are dropped, `##` pieces are glued to the
        previous one, words are joined by single spaces. Not an exact inverse:
        normalisation is lost, punctuation is spaced out (`a , b`), unknown
        words read `[UNK]`.
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
        dropped = [i for i in (self.pad_token_id, self.cls_token_id, self.sep_token_id) if i is not None]
        if dropped:
            keep = tf.reduce_all(tf.not_equal(ids.flat_values[:, None], tf.constant(dropped, tf.int32)), axis=1)
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


def _as_string_tensor(value, name):
    """Python str / bytes / (nested) list / numpy / tf.string -> dense `tf.string` Tensor, or a TypeError."""
    if isinstance(value, tf.RaggedTensor):
        raise TypeError(f"`{name}` must be a dense string tensor, got a RaggedTensor; pass `{name}.flat_values`")
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        is_string = dtype == tf.string if isinstance(dtype, tf.dtypes.DType) else np.dtype(dtype).kind in "OSU"
        if not is_string:
            raise TypeError(f"`{name}` must be strings (tf.string), got dtype {dtype}")
    try:
        return tf.convert_to_tensor(value, dtype=tf.string)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a string or a (nested) list/tensor of strings, got {value!r:.80}: {error}"
        ) from None
