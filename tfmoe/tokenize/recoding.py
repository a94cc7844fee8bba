"""Recoding text and vocabulary so that end-to-end FastWordpiece gives the reference's ids.

End-to-end `tf_text.FastWordpieceTokenizer` splits words with ICU's whitespace and
punctuation classes and limits their length in *bytes*; the reference BERT tokenizer
uses its own classes (`charsets`), limits words in *characters* and matches its special
tokens in the raw text. `Recoding` maps normalised text, code point by code point, and
the vocabulary the same way, so that FastWordpiece sees what the reference sees:

- word characters of the Basic Multilingual Plane move to plane 15 (c + U+F0000): every
  word character then takes 4 UTF-8 bytes, and `max_bytes_per_word` = 4 x
  `max_chars_per_word` limits characters;
- characters FastWordpiece classifies differently (`charsets.FAST_WORDPIECE_DISAGREES`)
  get stand-ins in plane 16, which it takes for word characters; those the reference
  splits off as one-character words are then surrounded by spaces;
- the reference's whitespace becomes U+0020;
- each special token (`[SEP]`, ...) written in the raw text becomes a stand-in of its
  own, between spaces, which is that token in the recoded vocabulary.

Planes 15 and 16 are private use, which cleaning deletes from the text, so these code
points cannot come from anywhere else. On text, lower-casing is part of the map (it
comes after NFD and mark stripping, as in the reference). Rows that need none of this
(`plain_rows_pattern`: ASCII and a few common characters that normalisation leaves
alone) are not recoded.

Each new graph that holds the tokenizer (a `tf.data` pipeline, a `tf.function`) pays
for every op of it when it starts, so the recoding takes few ops (a handful of regexes,
NFD, one table lookup per character) and no conditionals.
"""

import functools
import re

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfmoe.tokenize import charsets
from tfmoe.tokenize.normalization import character_class, subtract_ranges

_CODE_POINTS = 0x110000
_IMAGE_OFFSET = 0xF0000  # BMP word characters -> plane 15
_STAND_IN_BASE = 0x100000  # plane 16
# Stand-ins of characters ICU's NFD must not decompose, then of special tokens.
_PROTECTION_STAND_IN_BASE = 0x10F000
_SPECIAL_STAND_IN_BASE = 0x10FF00
_REPLACEMENT_CHARACTER = "\ufffd"
# Below this the text may change case (plane 1 holds cased scripts; the planes above, none).
_CASED_PLANES_END = 0x20000
_DOTTED_CAPITAL_I = "\u0130"  # the one character that lower-cases to two: i + U+0307
_MARKS = character_class(charsets.NONSPACING_MARKS)

# Reference classes of a code point.
_WORD, _SPACE, _SINGLE, _REMOVED = 0, 1, 2, 3

# Plain rows: printable ASCII plus \t \n \r, and characters of these blocks that
# normalisation leaves alone (`charsets.UNCHANGED`, whitespace): Latin-1 and general
# punctuation, arrows, box drawing, geometric shapes. A few ranges keep the pattern
# cheap to compile (every new graph compiles it).
_ASCII = ((0x09, 0x0A), (0x0D, 0x0D), (0x20, 0x7E))
_ASCII_WORD = ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A))
_PLAIN_BLOCKS = ((0x00A0, 0x00BF), (0x2000, 0x206F), (0x2190, 0x21FF), (0x2500, 0x25FF))
_MAX_RE2_REPEAT = 1000


@functools.lru_cache(maxsize=None)
def _class_table():
    """int8 `[0x110000]`: the reference class of every code point (shared: do not modify)."""
    table = np.full(_CODE_POINTS, _WORD, np.int8)
    for ranges, value in (
        (charsets.PUNCTUATION + charsets.CJK, _SINGLE),
        (charsets.WHITESPACE, _SPACE),
        (charsets.REMOVED, _REMOVED),
    ):
        for first, last in ranges:
            table[first : last + 1] = value
    return table


def _in_ranges(ranges):
    mask = np.zeros(_CODE_POINTS, bool)
    for first, last in ranges:
        mask[first : last + 1] = True
    return mask


def _ranges_of(mask):
    """bool `[0x110000]` -> sorted inclusive code point ranges where it holds."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return tuple((int(first), int(last) - 1) for first, last in zip(edges[::2], edges[1::2]))


@functools.lru_cache(maxsize=None)
def _plain_classes():
    """bool `[0x110000]` masks `(other, word)`: the characters of plain rows, by reference class.

    Printable ASCII (and \\t \\n \\r), and characters of `_PLAIN_BLOCKS` that
    normalisation leaves alone and FastWordpiece classifies as the reference does.
    `word` characters make words, `other` ones separate them.
    """
    classes = _class_table()
    blocks = _in_ranges(_PLAIN_BLOCKS)
    unchanged = _in_ranges(charsets.UNCHANGED) & blocks
    word = _in_ranges(_ASCII_WORD) | (unchanged & (classes == _WORD))
    other = _in_ranges(_ASCII) & ~_in_ranges(_ASCII_WORD)
    other |= (unchanged & (classes == _SINGLE)) | (blocks & (classes == _SPACE))
    if np.any(_in_ranges(charsets.FAST_WORDPIECE_DISAGREES) & (word | other)):
        raise AssertionError("a plain character is split differently by FastWordpiece")
    return other, word


@functools.lru_cache(maxsize=None)
def plain_rows_pattern(max_chars_per_word):
    """RE2 pattern fully matching the rows that need no recoding but for special tokens, or None.

    Those rows hold only the characters of `_plain_classes`, and no word longer than
    `max_chars_per_word`; ASCII lower-casing is all their normalisation unless they
    hold a special token. None when RE2 cannot count that far.
    """
    if max_chars_per_word >= _MAX_RE2_REPEAT:
        return None
    other, word = (character_class(_ranges_of(mask)) for mask in _plain_classes())
    return f"(?:{other}|{word}{{1,{max_chars_per_word}}}(?:{other}|$))*"


@functools.lru_cache(maxsize=None)
def plain_rows_python_regex(max_chars_per_word):
    """`plain_rows_pattern` for Python's `re` (on `str`), or None: quicker than an eager TF op on a few short rows."""
    if max_chars_per_word >= _MAX_RE2_REPEAT:
        return None
    other, word = (_python_class(_ranges_of(mask)) for mask in _plain_classes())
    return re.compile(rf"(?:{other}|{word}{{1,{max_chars_per_word}}}(?:{other}|\Z))*")


def _python_class(ranges):
    return "[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]"


@functools.lru_cache(maxsize=None)
def _vocabulary_map():
    """int32 `[0x110000]`: code point -> what FastWordpiece is shown (no lower-casing).

    Word characters go to 4-byte code points (BMP ones to plane 15, disagreeing ones to
    stand-ins), disagreeing one-character words to stand-ins; whitespace and removed
    characters stay (they are never inside a word).
    """
    classes = _class_table()
    code_points = np.arange(_CODE_POINTS, dtype=np.int64)
    mapped = code_points.copy()
    bmp_words = (classes == _WORD) & (code_points < 0x10000)
    mapped[bmp_words] += _IMAGE_OFFSET
    disagree = _in_ranges(charsets.FAST_WORDPIECE_DISAGREES) & ~bmp_words & (classes != _SPACE)
    mapped[disagree] = _STAND_IN_BASE + np.arange(np.count_nonzero(disagree))
    if _STAND_IN_BASE + np.count_nonzero(disagree) > _PROTECTION_STAND_IN_BASE:
        raise AssertionError("stand-ins overflow into the NFD protection stand-ins")
    return mapped.astype(np.int32)


@functools.lru_cache(maxsize=None)
def _vocabulary_translation():
    """`_vocabulary_map` as a `str.translate` table (the code points it changes)."""
    mapping = _vocabulary_map()
    changed = np.flatnonzero(mapping != np.arange(_CODE_POINTS))
    return dict(zip(changed.tolist(), map(chr, mapping[changed].tolist())))


@functools.lru_cache(maxsize=None)
def _removed_characters():
    """Python `re` matching a character that cleaning deletes."""
    return re.compile(_python_class(charsets.REMOVED))


@functools.lru_cache(maxsize=None)
def _lowercase_map():
    """int32 `[0x110000]`: the reference's lower case of each code point (U+0130 left alone).

    ICU (`tf.strings.lower`) on every cased-plane character, corrected by
    `charsets.LOWERCASE_FIXUPS`; computed once per process (~0.1 s).
    """
    lowered = np.arange(_CODE_POINTS, dtype=np.int32)
    candidates = lowered[1:_CASED_PLANES_END]
    candidates = candidates[
        ((candidates < 0xD800) | (candidates > 0xDFFF)) & (candidates != ord(_DOTTED_CAPITAL_I))
    ]
    with tf.init_scope():
        text = tf.strings.unicode_encode(tf.constant(candidates), "UTF-8")
        result = tf.strings.unicode_decode(
            tf.strings.lower(text, encoding="utf-8"), "UTF-8"
        ).numpy()
    if result.shape != candidates.shape:
        raise AssertionError("tf.strings.lower changed the number of characters")
    lowered[candidates] = result
    for upper, lower in charsets.LOWERCASE_FIXUPS.items():
        lowered[upper] = lower
    return lowered


class _CodePointMap:
    """A code point -> code point map for text: one lookup in a table of every code point."""

    def __init__(self, mapping):
        with tf.init_scope():
            # Built eagerly and captured: graphs share it instead of holding a copy.
            self._table = tf.constant(mapping.astype(np.int32))

    def __call__(self, text):
        """Maps the characters of `[n]` strings; drops invalid UTF-8 (as cleaning drops U+FFFD)."""
        row_splits, code_points = tf.raw_ops.UnicodeDecode(
            input=text, input_encoding="UTF-8", errors="ignore", Tsplits=tf.int64
        )
        return tf.raw_ops.UnicodeEncode(
            input_values=tf.gather(self._table, code_points),
            input_splits=row_splits,
            output_encoding="UTF-8",
            errors="replace",
        )


class Recoding:
    """The recoding of one tokenizer's text and vocabulary (see the module docstring).

    Args:
      lowercase, strip_accents: the tokenizer's normalisation.
      special_tokens: special tokens to recognise in the raw text (may be empty).
      vocabulary: the tokenizer's tokens; decides whether characters ICU's NFD
        decomposes but the reference does not need protecting.
    """

    def __init__(self, lowercase, strip_accents, special_tokens, vocabulary):
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self._vocabulary_map = _vocabulary_map()
        self._stand_in = {t: chr(_SPECIAL_STAND_IN_BASE + i) for i, t in enumerate(special_tokens)}
        classes = _class_table()
        text_map = self._vocabulary_map.copy()
        text_map[classes == _SPACE] = ord(" ")
        if lowercase:
            text_map = text_map[_lowercase_map()]
        self._protect = None
        if strip_accents and self._needs_nfd_protection(vocabulary):
            # Protected characters wait in stand-ins while ICU's NFD runs.
            protected = np.flatnonzero(_in_ranges(charsets.NFD_PROTECTED))
            waiting = _PROTECTION_STAND_IN_BASE + np.arange(len(protected))
            if waiting[-1] >= _SPECIAL_STAND_IN_BASE:
                raise AssertionError(
                    "NFD protection stand-ins overflow into the special-token stand-ins"
                )
            protect = np.arange(_CODE_POINTS, dtype=np.int32)
            protect[protected] = waiting
            self._protect = _CodePointMap(protect)
            text_map[waiting] = text_map[protected]
        self._text_map = _CodePointMap(text_map)
        # One-character words that got a stand-in: FastWordpiece must see them alone.
        spaced = np.zeros(_CODE_POINTS, bool)
        spaced[
            self._vocabulary_map[(classes == _SINGLE) & (self._vocabulary_map >= _STAND_IN_BASE)]
        ] = True
        self._spaced = character_class(_ranges_of(spaced)) if spaced.any() else None
        special_ranges = tuple((ord(c), ord(c)) for c in self._stand_in.values())
        self._special_stand_ins = character_class(special_ranges) if special_ranges else None
        # Cleaning deletes removed characters, but not the special tokens' stand-ins.
        self._removed = character_class(subtract_ranges(charsets.REMOVED, special_ranges))

    @staticmethod
    def _needs_nfd_protection(vocabulary):
        """Whether ICU's NFD of `charsets.NFD_PROTECTED` could change ids with `vocabulary`.

        The reference keeps these characters whole; ICU decomposes them. Both forms are
        words of word characters; when neither form's characters occur in the vocabulary,
        every word holding them is `[UNK]` either way.
        """
        protected = [
            chr(c) for first, last in charsets.NFD_PROTECTED for c in range(first, last + 1)
        ]
        with tf.init_scope():
            decomposed = tf_text.normalize_utf8(tf.constant(protected), "NFD").numpy()
        characters = set("".join(protected)) | set("".join(d.decode("utf-8") for d in decomposed))
        classes = _class_table()
        if any(classes[ord(c)] not in (_WORD, _REMOVED) for c in characters):
            return True
        return any(c in characters for token in vocabulary for c in token)

    def vocabulary(self, tokens, suffix_indicator):
        """The vocabulary for one FastWordpiece that reads plain rows and recoded text.

        Returns:
          `(wordpieces, ids)`: the tokens as they are, then the recoded ones that
          differ; `ids[i]` is the tokenizer's id of `wordpieces[i]`. Tokens with
          characters cleaning deletes can never be matched and are left out, so
          that nothing in the vocabulary collides with a recoded token.
        """
        translation, removed = _vocabulary_translation(), _removed_characters()
        kept, recoded = [], []
        for index, token in enumerate(tokens):
            if token in self._stand_in:
                recoded.append((self._stand_in[token], index))
            prefix = (
                suffix_indicator
                if token.startswith(suffix_indicator) and token != suffix_indicator
                else ""
            )
            body = token[len(prefix) :]
            if removed.search(body):
                continue
            kept.append((token, index))
            if token not in self._stand_in:
                image = prefix + body.translate(translation)
                if image != token:
                    recoded.append((image, index))
        wordpieces, ids = zip(*(kept + recoded))
        return list(wordpieces), list(ids)

    def recode(self, text):
        """Raw `[n]` strings (any bytes) -> normalised and recoded text for FastWordpiece.

        Invalid UTF-8 passes the regexes and NFD untouched (it matches nothing) and the
        code point maps drop it, as the reference's cleaning drops U+FFFD.
        """
        if self._special_stand_ins:
            # Stand-ins already in the text must not pass for special tokens: U+FFFD is cleaned away.
            text = tf.strings.regex_replace(text, self._special_stand_ins, _REPLACEMENT_CHARACTER)
            for token, stand_in in self._stand_in.items():
                text = tf.strings.regex_replace(text, rf"\Q{token}\E", f" {stand_in} ")
        text = tf.strings.regex_replace(text, self._removed, "")
        if self.strip_accents:
            if self._protect:
                text = self._protect(text)
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, _MARKS, "")
        elif self.lowercase:
            text = tf.strings.regex_replace(text, _DOTTED_CAPITAL_I, "i\u0307")
        text = self._text_map(text)
        if self._spaced:
            text = tf.strings.regex_replace(text, self._spaced, r" \0 ")
        return text
