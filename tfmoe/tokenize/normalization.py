"""BERT text normalisation with TensorFlow graph ops.

`normalize_text` reproduces the reference normaliser (Hugging Face
`BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents, lowercase)`)
code point for code point, in this order:

1. invalid UTF-8 becomes U+FFFD;
2. clean text: controls (except \\t \\n \\r), format and private-use characters,
   U+0000 and U+FFFD are deleted, every whitespace character becomes U+0020;
3. CJK ideographs are padded with spaces (`pad_cjk`);
4. `strip_accents`: NFD, then non-spacing marks are deleted;
5. `lowercase`: per-character lower case (unlike `tf_text.case_fold_utf8`, no NFKC,
   so `ß`, `µ`, `™`, `…` stay as they are, and no final-sigma rule).

The character sets come from `charsets.py`, generated from the reference itself,
because its Unicode tables are older than TF's ICU/RE2 in some places and newer
in others. Rows made only of ASCII and of characters that normalisation leaves
alone (`charsets.UNCHANGED`: curly quotes, dashes, CJK, lower-case Cyrillic...)
take a short path: ASCII lower-casing and nothing else.
"""

import functools

import tensorflow as tf
import tensorflow_text as tf_text

from tfmoe.tokenize import charsets

# Printable ASCII plus \t \n \r. Rows of these and of `charsets.UNCHANGED` only
# take the short path: normalisation is ASCII lower-casing (and \t\n\r -> space).
_ASCII = ((0x09, 0x0A), (0x0D, 0x0D), (0x20, 0x7E))
# Where `normalize_text` moves characters that ICU's NFD would decompose but the
# reference does not. Private use, so step 2 has already deleted any real ones.
_PROTECTION_BASE = 0xF0000


def character_class(ranges):
    """RE2 character class (`[...]`) matching the inclusive code point `ranges`."""
    parts = []
    for first, last in ranges:
        if first == last:
            parts.append(f"\\x{{{first:X}}}")
        else:
            parts.append(f"\\x{{{first:X}}}-\\x{{{last:X}}}")
    return "[" + "".join(parts) + "]"


def subtract_ranges(ranges, removed):
    """Inclusive code point ranges minus other ranges (both sorted)."""
    out = []
    for first, last in ranges:
        for cut_first, cut_last in removed:
            if cut_last < first or cut_first > last:
                continue
            if cut_first > first:
                out.append((first, cut_first - 1))
            first = cut_last + 1
            if first > last:
                break
        if first <= last:
            out.append((first, last))
    return tuple(out)


def contains_pattern(ranges):
    """RE2 pattern for `regex_full_match` that is true when a string holds any of `ranges`."""
    return r"(?s).*" + character_class(ranges) + ".*"


_REMOVED = character_class(charsets.REMOVED)
_WHITESPACE_BUT_SPACE = character_class([r for r in charsets.WHITESPACE if r != (0x20, 0x20)])
_MARKS = character_class(charsets.NONSPACING_MARKS)
_CJK_GROUP = "(" + character_class(charsets.CJK) + ")"


def _expand(ranges):
    return [c for first, last in ranges for c in range(first, last + 1)]


_PROTECT = {c: _PROTECTION_BASE + i for i, c in enumerate(_expand(charsets.NFD_PROTECTED))}
_UNPROTECT = {v: k for k, v in _PROTECT.items()}


def update_rows(target, source, mask, function):
    """`target` with the rows where `mask` holds replaced by `function(source[those rows])`.

    `function` is not run at all (a `tf.cond`) when no row is selected, which
    keeps the common all-simple batch cheap.
    """

    def update():
        rows = tf.where(mask)
        return tf.tensor_scatter_nd_update(target, rows, function(tf.gather_nd(source, rows)))

    return tf.cond(tf.reduce_any(mask), update, lambda: tf.identity(target))


def map_code_points(strings, mapping):
    """Replaces single code points by others, following the dict `mapping`.

    Args:
      strings: `tf.string` tensor of shape `[n]`, valid UTF-8.
      mapping: dict of int code point -> int code point.

    Returns:
      `tf.string` of shape `[n]`. Only the rows holding one of the keys are
      decoded; the others are passed through untouched.
    """
    keys = sorted(mapping)
    key_tensor = tf.constant(keys, tf.int32)
    value_tensor = tf.constant([mapping[k] for k in keys], tf.int32)

    def replace(rows):
        code_points = tf.strings.unicode_decode(rows, "UTF-8")
        flat = code_points.flat_values
        position = tf.minimum(tf.searchsorted(key_tensor, flat), len(keys) - 1)
        flat = tf.where(
            tf.gather(key_tensor, position) == flat, tf.gather(value_tensor, position), flat
        )
        return tf.strings.unicode_encode(code_points.with_flat_values(flat), "UTF-8")

    found = tf.strings.regex_full_match(strings, contains_pattern([(k, k) for k in keys]))
    return update_rows(strings, strings, found, replace)


def replace_invalid_utf8(text):
    """Replaces invalid UTF-8 (and encoded surrogates) with U+FFFD, which cleaning then deletes."""
    return tf.strings.unicode_transcode(
        text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
    )


def _normalize_unicode(text, lowercase, strip_accents, exact_whitespace, pad_cjk):
    """The full normaliser, for rows that are not plain ASCII."""
    text = replace_invalid_utf8(text)
    text = tf.strings.regex_replace(text, _REMOVED, "")
    if exact_whitespace:
        text = tf.strings.regex_replace(text, _WHITESPACE_BUT_SPACE, " ")
    if pad_cjk:
        text = tf.strings.regex_replace(text, _CJK_GROUP, r" \1 ")
    if strip_accents:
        text = map_code_points(text, _PROTECT)
        text = tf_text.normalize_utf8(text, "NFD")
        text = map_code_points(text, _UNPROTECT)
        text = tf.strings.regex_replace(text, _MARKS, "")
    if lowercase:
        # `tf.strings.lower` stops at U+0000; step 2 has deleted those.
        text = map_code_points(text, charsets.LOWERCASE_FIXUPS)
        text = tf.strings.lower(text, encoding="utf-8")
    return text


def _normalize_short_path(text, lowercase, exact_whitespace):
    """Lower-cases A-Z only: bytes of multi-byte characters are left as they are."""
    if exact_whitespace:
        text = tf.strings.regex_replace(text, r"[\t\n\r]", " ")
    return tf.strings.lower(text) if lowercase else text


@functools.lru_cache(maxsize=None)
def _short_path_pattern(pad_cjk, exact_whitespace):
    ranges = _ASCII
    ranges += subtract_ranges(charsets.UNCHANGED, charsets.CJK) if pad_cjk else charsets.UNCHANGED
    if not exact_whitespace:
        # Left unmapped, Unicode spaces still separate words (for FastWordpiece too).
        ranges += subtract_ranges(charsets.WHITESPACE, _ASCII)
    return character_class(sorted(ranges)) + "*"


@tf.autograph.experimental.do_not_convert
def normalize_text(
    text, *, lowercase=True, strip_accents=True, pad_cjk=True, exact_whitespace=True
):
    """BERT normalisation of a batch of strings (see the module docstring).

    Args:
      text: `tf.string` tensor of shape `[n]` (any bytes; invalid UTF-8 is replaced).
      lowercase: lower-case every character as the reference does.
      strip_accents: NFD and deletion of non-spacing marks.
      pad_cjk: surround CJK ideographs with spaces. The tokenizer's end-to-end
        FastWordpiece splits them itself and passes False.
      exact_whitespace: map \\t, \\n, \\r and Unicode spaces to U+0020. Splitting
        treats them all as spaces anyway, so the tokenizer passes False.

    Returns:
      `tf.string` tensor of shape `[n]`; with the defaults, equal to
      `tokenizers.normalizers.BertNormalizer(lowercase=..., strip_accents=...)`.
    """
    text = tf.convert_to_tensor(text, tf.string)
    short = tf.strings.regex_full_match(text, _short_path_pattern(pad_cjk, exact_whitespace))
    return update_rows(
        _normalize_short_path(text, lowercase, exact_whitespace),
        text,
        tf.logical_not(short),
        lambda rows: _normalize_unicode(rows, lowercase, strip_accents, exact_whitespace, pad_cjk),
    )
