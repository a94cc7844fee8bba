"""Splitting text into words the way the reference BERT pre-tokenizer does.

Used by `learn_vocabulary`. (`WordpieceTokenizer` gets the same words out of
end-to-end FastWordpiece, see `recoding.py`.)
"""

import tensorflow as tf
import tensorflow_text as tf_text

from tfmoe.tokenize import charsets
from tfmoe.tokenize.normalization import character_class

_WHITESPACE = character_class(charsets.WHITESPACE)
# CJK ideographs are single-character words too (the normaliser pads them with
# spaces; splitting on them as well changes nothing and covers unpadded text).
_SINGLE_CHARACTER_WORD = character_class(charsets.PUNCTUATION + charsets.CJK)
_WORD_DELIMITERS = f"{_WHITESPACE}+|{_SINGLE_CHARACTER_WORD}"


@tf.autograph.experimental.do_not_convert
def split_words(normalized_text):
    """Normalised text `[n]` -> words, `tf.string` RaggedTensor `[n, (words)]`.

    Whitespace separates words and is dropped; each punctuation character
    (ASCII symbols and Unicode P*) and CJK ideograph is a word of its own.
    """
    return tf_text.regex_split(
        normalized_text, _WORD_DELIMITERS, keep_delim_regex_pattern=_SINGLE_CHARACTER_WORD
    )
