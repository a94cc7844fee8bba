"""`SentencePieceTokenizer`: T5's SentencePiece tokenizer as a Keras layer on `tf_text`'s SentencePiece ops.

Reads a checkpoint's `spiece.model` and gives the ids of the reference Hugging Face
T5 tokenizer (`transformers.T5Tokenizer` with `extra_ids=100`), sentinels included.

T5 vocabulary: the SentencePiece pieces (`<pad>` 0, `</s>` 1, `<unk>` 2, ...), then
`extra_ids` sentinels in reverse order, so that `<extra_id_0>` is the last id
(`vocabulary_size() - 1`) and `<extra_id_i>` is `vocabulary_size() - 1 - i`.

How a batch is tokenized (graph ops: runs in `tf.data`, `tf.function`, SavedModel),
as the reference does:

1. The raw text is split at the special tokens written in it (`<pad>`, `</s>`,
   `<unk>`, `<extra_id_N>`), which become their ids, and at Unicode whitespace.
2. Each word is segmented on its own by SentencePiece (normalisation, a `▁`
   prefix, unigram Viterbi), from a copy of the model (`_encoding_model`) whose
   scores are rounded so that equally scored segmentations (`000` as `0 00` or
   `00 0`) tie exactly and break as in the reference, instead of by float32
   round-off.
3. `</s>` is appended when `add_eos`.

Known differences, all rare:
- The reference normalises grapheme clusters of 6 UTF-8 bytes or more (a letter
  with two or more combining marks, as `a` U+0300 U+0301 U+0302) character by
  character, SentencePiece (and this tokenizer) as a whole (`à` composed).
- `<unk>` spelled otherwise that normalises to it (`＜unk＞`) is one unk id in the
  reference, unknown characters and `unk` pieces here.
- Segmentations whose scores differ by about one float32 unit (some 1e-6) are
  told apart by the reference, which adds scores in float64, not here
  (SentencePiece adds them in float32, here rounded to 2**-_SCORE_BITS): found
  in long digit runs.
- In words whose piece scores add up below -2**(24 - _SCORE_BITS) (some 70
  pieces and more: long runs of text without spaces) float32 round-off is back,
  and exact ties may break otherwise.
"""

import base64
import hashlib
import os

import keras
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from sentencepiece import sentencepiece_model_pb2
from tensorflow_text.python.ops.sentencepiece_tokenizer import gen_sentencepiece_tokenizer

from tfmoe.tokenize.tokenizer_layer import TokenizerLayer

# SentencePiece's word boundary marker.
_META_SPACE = "\u2581"
# Characters with the Unicode White_Space property, at which the reference splits
# words (Rust's `char::is_whitespace`) after normalisation; less U+000B, which
# normalisation deletes (`a\vb` is one word). SentencePiece's own normalisation
# keeps U+0085 (and would not split there).
_WHITESPACE = (
    r"[\t\n\x{0C}\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+"
)
# Piece scores are rounded to multiples of 2**-_SCORE_BITS, so that SentencePiece
# adds those of a word exactly in float32 (sums below 2**(24 - _SCORE_BITS)).
_SCORE_BITS = 14


# Graph code below branches on Python values only: autograph would just cost seconds of tracing.
@keras.saving.register_keras_serializable(package="tfmoe")
class SentencePieceTokenizer(TokenizerLayer):
    """T5 SentencePiece tokenizer layer (string -> int32 ids), exact with the reference.

    Args:
      proto: the SentencePiece model: path of a `spiece.model` file, or its bytes.
        Must define pad, eos and unk pieces (T5: `<pad>` 0, `</s>` 1, `<unk>` 2) and
        no byte fallback (the reference T5 tokenizer has none).
      sequence_length: if set, outputs are dense `[batch, sequence_length]`,
        truncated (the end goes first, `</s>` included) or padded with the pad id.
      add_eos: append `</s>` to every sequence, as the reference does by default.
      extra_ids: number of sentinels `<extra_id_0>`... added after the pieces.
      special_tokens_in_strings: read `<pad>`, `</s>`, `<unk>` and the sentinels
        written in the raw text as those tokens, as the reference does. Set False
        for untrusted text (then `</s>` is tokenized as the characters `<`, `/`...).
      proto_base64: the model's bytes in base64 instead of `proto` (what
        `get_config` writes, so that `from_config` needs no file).

    Call:
      `inputs`: a Python string or list of strings, or a `tf.string` tensor of any
      rank. Returns int32 ids: for `[batch]` inputs a RaggedTensor
      `[batch, (tokens)]` (dense `[batch, sequence_length]` when set); for a scalar,
      a dense `[tokens]` (or `[sequence_length]`). Higher ranks add ragged dims.
    """

    def __init__(
        self,
        proto=None,
        sequence_length=None,
        add_eos=False,
        extra_ids=100,
        special_tokens_in_strings=True,
        proto_base64=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        # Raw strings in, TF tensors through (not converted to backend tensors).
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if sequence_length is not None and (
            isinstance(sequence_length, bool)
            or not isinstance(sequence_length, int)
            or sequence_length < 1
        ):
            raise ValueError(
                f"`sequence_length` must be a positive int or None, got {sequence_length!r}"
            )
        if isinstance(extra_ids, bool) or not isinstance(extra_ids, int) or extra_ids < 0:
            raise ValueError(f"`extra_ids` must be a non-negative int, got {extra_ids!r}")
        self._proto = _load_proto(proto, proto_base64)
        processor = _processor(self._proto)
        model = sentencepiece_model_pb2.ModelProto.FromString(self._proto)
        if model.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
            raise ValueError("`proto` is not a unigram SentencePiece model, as T5's are")
        self.sequence_length = sequence_length
        self.add_eos = bool(add_eos)
        self.extra_ids = extra_ids
        self.special_tokens_in_strings = bool(special_tokens_in_strings)

        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        sentinels = [f"<extra_id_{i}>" for i in reversed(range(extra_ids))]
        self._num_pieces = len(pieces)
        self._vocabulary = pieces + sentinels
        self._token_to_id = {token: i for i, token in enumerate(self._vocabulary)}
        if len(self._token_to_id) != len(self._vocabulary):
            raise ValueError(
                "`proto` already holds sentinel pieces `<extra_id_N>`: pass `extra_ids=0`"
            )
        self._pad_id, self._eos_id, self._unk_id = (
            processor.pad_id(),
            processor.eos_id(),
            processor.unk_id(),
        )
        missing = [name for name, i in (("pad", self._pad_id), ("eos", self._eos_id)) if i < 0]
        if missing:
            raise ValueError(f"`proto` defines no {' and no '.join(missing)} piece, which T5 needs")
        if any(processor.is_byte(i) for i in range(len(pieces))):
            raise ValueError("`proto` uses byte fallback, which the T5 tokenizer does not")

        # Special tokens as written in text, longest first so that none hides another.
        special_ids = [self._pad_id, self._eos_id, self._unk_id] + list(self.sentinel_token_ids)
        self._special_tokens = sorted(
            {self._vocabulary[i] for i in special_ids}, key=lambda t: (-len(t), t)
        )
        special_pattern = "|".join(rf"\Q{token}\E" for token in self._special_tokens)
        self._special_pattern = special_pattern if self.special_tokens_in_strings else None
        self._split_pattern = (
            f"{special_pattern}|{_WHITESPACE}" if self._special_pattern else _WHITESPACE
        )
        with tf.init_scope():
            # Eager, so that graphs capture them instead of each holding a copy.
            encoding_model = _encoding_model(
                model,
                sentinels if self.special_tokens_in_strings else None,
                (self._pad_id, self._eos_id),
            )
            self._sentencepiece = _SentencePieceModel(encoding_model)
            self._special_token_strings = tf.constant(self._special_tokens, tf.string)
            self._special_token_ids = tf.constant(
                [self._token_to_id[t] for t in self._special_tokens], tf.int32
            )
            # Pieces as detokenization writes them: `▁` stays (a space once joined).
            self._pieces = tf.constant(self._vocabulary, tf.string)
        # Traced once, on first use, and shared by every graph that tokenizes.
        self._tokenize_batch_graph = tf.function(
            self._tokenize_batch,
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )
        self.built = True

    # Vocabulary and special tokens.

    @property
    def proto(self):
        """The SentencePiece model, serialized (bytes)."""
        return self._proto

    @property
    def pad_token_id(self):
        return self._pad_id

    @property
    def eos_token_id(self):
        return self._eos_id

    @property
    def end_token_id(self):
        return self._eos_id

    @property
    def unknown_token_id(self):
        return self._unk_id

    @property
    def sentinel_token_ids(self):
        """Ids of the sentinels `<extra_id_0>`, `<extra_id_1>`, ... (tuple of int, descending)."""
        top = len(self._vocabulary) - 1
        return tuple(top - i for i in range(self.extra_ids))

    @property
    def special_token_ids(self):
        """Ids of pad, eos, unk, then the sentinels."""
        return (self._pad_id, self._eos_id, self._unk_id) + self.sentinel_token_ids

    # Tokenization.

    def _tokenize_flat(self, text):
        return self._tokenize_batch_graph(text)

    def _tokenize_batch(self, text):
        """`[n]` strings -> `[n, (tokens)]` int32, int64 row splits."""
        # [n, (words)]: the words, and the special tokens as they are. `regex_split`
        # stops at a NUL: it splits a copy with \x01 for NUL (neither is whitespace),
        # and the words are cut from the text at the same byte offsets.
        without_nul = tf.strings.regex_replace(text, r"\x00", "\x01")
        words, begins, ends = tf_text.regex_split_with_offsets(
            without_nul, self._split_pattern, self._special_pattern or ""
        )
        flat_words = tf.strings.substr(
            tf.gather(text, words.value_rowids()),
            begins.flat_values,
            ends.flat_values - begins.flat_values,
        )
        if self._special_pattern is None:
            word_ids = self._sentencepiece.tokenize(flat_words)
        else:
            is_special = tf.strings.regex_full_match(flat_words, self._special_pattern)
            specials = tf.boolean_mask(flat_words, is_special)
            # [specials]: index of each in the (short) list of special tokens.
            which = tf.argmax(
                tf.cast(
                    tf.equal(specials[:, None], self._special_token_strings[None, :]), tf.int32
                ),
                1,
            )
            special_rows = tf.RaggedTensor.from_row_lengths(
                tf.gather(self._special_token_ids, which),
                tf.cast(is_special, tf.int64),
                validate=False,
            )
            # Special tokens are tokenized as "" (no ids), then get their one id.
            word_ids = self._sentencepiece.tokenize(tf.where(is_special, "", flat_words))
            word_ids = tf.concat([word_ids, special_rows], axis=1)
        ids = tf.RaggedTensor.from_row_splits(
            word_ids, words.row_splits, validate=False
        ).merge_dims(1, 2)
        if self.add_eos:
            eos = tf.fill(tf.stack([ids.nrows(), 1]), tf.constant(self._eos_id, tf.int32))
            ids = tf.concat([ids, eos], axis=1)
        return ids

    @tf.autograph.experimental.do_not_convert
    def detokenize(self, ids, skip_special_tokens=False):
        """Ids -> text: `[batch, (tokens)]` (ragged or dense) -> `[batch]`; `[tokens]` -> scalar.

        Pad and eos ids are dropped; sentinels and unk read `<extra_id_N>` and
        `<unk>` (with `skip_special_tokens`, they are dropped too). Pieces are
        joined, `▁` reads a space, the text's first one is dropped: the reference's
        `decode` of the ids left. Not an exact inverse: normalisation and
        whitespace runs are lost. Ids outside the vocabulary read as unk.
        """
        if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple)):
            ids = tf.ragged.constant(ids, dtype=tf.int32)
        elif isinstance(ids, (list, tuple)) and not ids:
            ids = tf.zeros([0], tf.int32)
        elif not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"`ids` must be integer token ids, got dtype {ids.dtype.name}")
        if ids.shape.rank not in (1, 2):
            raise ValueError(f"`ids` must have rank 1 or 2, got shape {ids.shape}")
        single = ids.shape.rank == 1
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids[None] if single else ids)
        flat = tf.cast(ids.flat_values, tf.int32)
        known = (flat >= 0) & (flat < len(self._vocabulary))
        flat = tf.where(known, flat, self._unk_id)
        keep = tf.not_equal(flat, self._pad_id) & tf.not_equal(flat, self._eos_id)
        if skip_special_tokens:
            keep &= tf.not_equal(flat, self._unk_id) & (flat < self._num_pieces)
        pieces = tf.ragged.boolean_mask(
            ids.with_flat_values(tf.gather(self._pieces, flat)), ids.with_flat_values(keep)
        )
        text = tf.strings.reduce_join(pieces, axis=1)
        text = tf.strings.regex_replace(text, "^" + _META_SPACE, "", replace_global=False)
        text = tf.strings.regex_replace(text, _META_SPACE, " ")
        return text[0] if single else text

    def get_config(self):
        config = super().get_config()
        config.update(
            proto_base64=base64.b64encode(self._proto).decode("ascii"),
            sequence_length=self.sequence_length,
            add_eos=self.add_eos,
            extra_ids=self.extra_ids,
            special_tokens_in_strings=self.special_tokens_in_strings,
        )
        return config


class _SentencePieceModel(tf.saved_model.experimental.TrackableResource):
    """The `tf_text` SentencePiece model resource, shared by name; `tokenize`s `[n]` strings.

    `tf_text.SentencepieceTokenizer`'s resource belongs to its op's kernel, which
    `keras.utils.clear_session()` deletes (it clears the kernel cache), and every
    tokenizer made before would fail (NotFoundError). A resource with a shared
    name outlives the kernel; the name is the model's hash, so that tokenizers,
    SavedModels and tf.data pipelines of the same model share one, that lasts
    as long as the process.
    """

    def __init__(self, model):
        super().__init__()
        self._model = model
        self._shared_name = "tfmoe_sentencepiece_" + hashlib.sha256(model).hexdigest()[:32]
        _ = self.resource_handle  # creates it

    def _create_resource(self):
        return gen_sentencepiece_tokenizer.sentencepiece_op(
            model=self._model, shared_name=self._shared_name
        )

    def tokenize(self, text):
        """`[n]` strings -> int32 ids `[n, (pieces)]`, int64 row splits (no sampling, bos or eos)."""
        values, row_splits = gen_sentencepiece_tokenizer.sentencepiece_tokenize_op(
            self.resource_handle,
            text,
            nbest_size=0,
            alpha=1.0,
            add_bos=False,
            add_eos=False,
            reverse=False,
            out_type=tf.int32,
            Tsplits=tf.int64,
            return_nbest=False,
        )
        return tf.RaggedTensor.from_row_splits(values, row_splits, validate=False)


def _load_proto(proto, proto_base64):
    """The model's bytes from `proto` (path or bytes) or `proto_base64`; ValueError/TypeError naming the argument."""
    if (proto is None) == (proto_base64 is None):
        raise ValueError(
            "Pass one of `proto` (a spiece.model path or its bytes) and `proto_base64`"
        )
    if proto_base64 is not None:
        try:
            return base64.b64decode(proto_base64, validate=True)
        except (TypeError, ValueError) as error:
            raise ValueError(f"`proto_base64` is not base64: {error}") from None
    if isinstance(proto, (bytes, bytearray)):
        return bytes(proto)
    if isinstance(proto, (str, os.PathLike)):
        if not os.path.isfile(proto):
            raise ValueError(f"`proto`: no SentencePiece model file at {os.fspath(proto)!r}")
        with open(proto, "rb") as file:
            return file.read()
    raise TypeError(f"`proto` must be a path or bytes, got {type(proto).__name__}")


def _encoding_model(model, sentinels, control_ids):
    """A copy of the `ModelProto` `model` for the `tf_text` op (serialized), which segments words as the reference.

    - Scores are rounded (`_SCORE_BITS`): sums over a word are then exact, and
      equally scored segmentations tie exactly. SentencePiece then breaks ties as
      the reference does (at each position, the longest last piece); with float32
      round-off it would break them at random.
    - With `sentinels` (not None): they are appended, and the `control_ids` pieces
      (pad, eos) made user-defined, so that SentencePiece reads those tokens in its
      normalised text (`＜/s＞` becomes `</s>`), as the reference does, whose
      model holds them as ordinary pieces. Those written as such in the raw text
      are split off before it sees them.
    """
    model = sentencepiece_model_pb2.ModelProto.FromString(model.SerializeToString())
    scale = float(2**_SCORE_BITS)
    for piece in model.pieces:
        piece.score = round(piece.score * scale) / scale
    if sentinels is not None:
        user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
        for piece_id in control_ids:
            model.pieces[piece_id].type = user_defined
        for token in sentinels:
            model.pieces.add(piece=token, score=0.0, type=user_defined)
    return model.SerializeToString()


def _processor(proto):
    """A `sentencepiece` processor for the serialized model `proto`, or a ValueError."""
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError, TypeError) as error:
        raise ValueError(f"`proto` is not a SentencePiece model: {error}") from None
    if processor.get_piece_size() == 0:
        raise ValueError("`proto` is not a SentencePiece model: no pieces")
    return processor
