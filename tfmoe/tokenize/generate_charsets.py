"""Regenerates `tfmoe/tokenize/charsets.py` from the reference BERT tokenizer.

    python -m tfmoe.tokenize.generate_charsets --output tfmoe/tokenize/charsets.py

The reference normaliser and pre-tokenizer (Hugging Face `tokenizers`, Rust) use
Unicode tables of several ages: control characters, non-spacing marks and
punctuation come from an old `unicode_categories` crate, NFD from an old
`unicode-normalization` fork, lower-casing from the Rust standard library. TF's
ICU and RE2 are newer (or older) in places. Instead of trusting any one Unicode
version, this script asks the reference about every code point and writes down
the sets it implies, plus the few code points where the TF ops we use disagree
with it. Needs the `tokenizers` package (the `test` extra); a few minutes of CPU.
"""

import os
import sys
import unicodedata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

_BATCH = 1 << 16


def _code_points():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def _ranges(code_points):
    """Sorted code points -> tuple of inclusive (first, last) ranges."""
    out = []
    for c in sorted(code_points):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return tuple((a, b) for a, b in out)


def _tf_map(fn, strings):
    """Applies a TF string function to a Python list of str, in batches."""
    out = []
    for i in range(0, len(strings), _BATCH):
        batch = tf.constant([s.encode("utf-8") for s in strings[i : i + _BATCH]])
        result = fn(batch)
        if isinstance(result, tf.RaggedTensor):
            out += result.to_list()
        else:
            out += [r.decode("utf-8") for r in result.numpy()]
    return out


def compute_charsets():
    """Returns a dict of name -> ranges (or mapping) describing the reference."""
    from tokenizers import normalizers, pre_tokenizers

    def bert_normalizer(**flags):
        options = dict(
            clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False
        )
        options.update(flags)
        return normalizers.BertNormalizer(**options)

    cleaner = bert_normalizer(clean_text=True)
    chinese = bert_normalizer(handle_chinese_chars=True)
    stripper = bert_normalizer(strip_accents=True)
    lowerer = bert_normalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()

    cps = _code_points()
    chars = [chr(c) for c in cps]

    removed, whitespace_mapped = [], []
    for c, ch in zip(cps, chars):
        cleaned = cleaner.normalize_str(ch)
        if cleaned == "":
            removed.append(c)
        elif cleaned == " " and ch != " ":
            whitespace_mapped.append(c)
        elif cleaned != ch:
            raise AssertionError(f"clean_text maps U+{c:04X} to {cleaned!r}")
    removed_set = set(removed)
    kept = [(c, ch) for c, ch in zip(cps, chars) if c not in removed_set]

    # Non-spacing marks as the reference strips them (NFD first, then the marks go).
    marks = [c for c, ch in kept if stripper.normalize_str(ch) == ""]
    marks_set = set(marks)
    icu_nfd = _tf_map(lambda s: tf_text.normalize_utf8(s, "NFD"), [ch for _, ch in kept])
    nfd_protected = []
    for (c, ch), decomposed in zip(kept, icu_nfd):
        ours = "".join(x for x in decomposed if ord(x) not in marks_set)
        theirs = stripper.normalize_str(ch)
        if ours != theirs:
            if theirs != ch:
                raise AssertionError(f"strip_accents: U+{c:04X} -> {theirs!r}, ICU NFD -> {ours!r}")
            nfd_protected.append(c)

    # Lower-casing: the reference maps char by char (no final sigma); ICU in
    # `tf.strings.lower` has other tables and a context rule. Check both a lone
    # character and one after a cased letter.
    lowered_alone = _tf_map(lambda s: tf.strings.lower(s, encoding="utf-8"), [ch for _, ch in kept])
    lowered_after = _tf_map(
        lambda s: tf.strings.lower(s, encoding="utf-8"), ["A" + ch for _, ch in kept]
    )
    lowercase_fixups = {}
    for (c, ch), alone, after in zip(kept, lowered_alone, lowered_after):
        theirs = lowerer.normalize_str(ch)
        if alone != theirs or after != "a" + theirs:
            if len(theirs) != 1:
                raise AssertionError(f"lowercase: U+{c:04X} -> {theirs!r} (several code points)")
            lowercase_fixups[c] = ord(theirs)
    targets = [chr(t) for t in lowercase_fixups.values()]
    for target, relowered in zip(
        targets, _tf_map(lambda s: tf.strings.lower(s, encoding="utf-8"), targets)
    ):
        if relowered != target:
            raise AssertionError(f"ICU lower-cases the fix-up target {target!r} again")

    # Pre-tokenizer classes on the characters that survive cleaning.
    cjk, punctuation, split_whitespace = [], [], []
    reference_class = {}
    for c, ch in kept:
        if chinese.normalize_str(ch) != ch:
            cjk.append(c)
            reference_class[c] = "punct"
            continue
        pieces = splitter.pre_tokenize_str("x" + ch + "x")
        reference_class[c] = {1: "word", 2: "space", 3: "punct"}[len(pieces)]
        if reference_class[c] == "punct":
            punctuation.append(c)
        elif reference_class[c] == "space":
            split_whitespace.append(c)

    # How end-to-end FastWordpiece classifies each character: with the vocabulary
    # [UNK], x, ##x, "x?x" gives [x, x] (space), [x, UNK, x] (punct) or [UNK] (word).
    probe = tf_text.FastWordpieceTokenizer(["[UNK]", "x", "##x"], token_out_type=tf.int32)
    probe_ids = _tf_map(probe.tokenize, ["x" + ch + "x" for c, ch in kept if c != ord("x")])
    fast_class = {(1, 1): "space", (1, 0, 1): "punct", (0,): "word"}
    fast_wordpiece_disagrees = [
        c
        for (c, _), ids in zip([k for k in kept if k[0] != ord("x")], probe_ids)
        if fast_class.get(tuple(ids)) != reference_class[c]
    ]
    # Characters every normalisation step leaves alone (the tokenizer's cheap path).
    fast_disagree_set = set(fast_wordpiece_disagrees)
    lowercase_changed = set(lowercase_fixups)
    candidates = [
        (c, ch)
        for (c, ch), decomposed, alone in zip(kept, icu_nfd, lowered_alone)
        if c > 0x7E
        and unicodedata.category(ch)[0] in "LNPSZ"
        and unicodedata.combining(ch) == 0
        and reference_class[c] != "space"
        and c not in marks_set
        and c not in fast_disagree_set
        and c not in lowercase_changed
        and decomposed == ch
        and alone == ch
    ]
    unchanged = [
        c
        for c, ch in candidates
        if cleaner.normalize_str(ch) == ch
        and stripper.normalize_str(ch) == ch
        and lowerer.normalize_str(ch) == ch
    ]
    return {
        "UNCHANGED": _ranges(unchanged),
        "REMOVED": _ranges(removed),
        "WHITESPACE": _ranges(set(whitespace_mapped) | set(split_whitespace) | {0x20}),
        "NONSPACING_MARKS": _ranges(marks),
        "NFD_PROTECTED": _ranges(nfd_protected),
        "LOWERCASE_FIXUPS": dict(sorted(lowercase_fixups.items())),
        "CJK": _ranges(cjk),
        "PUNCTUATION": _ranges(punctuation),
        "FAST_WORDPIECE_DISAGREES": _ranges(fast_wordpiece_disagrees),
    }


_DOCS = {
    "UNCHANGED": "Non-ASCII characters that cleaning, NFD, mark stripping and lower-casing all leave alone.",
    "REMOVED": "Deleted by `clean_text`: controls (not \\t \\n \\r), format, private use, U+0000, U+FFFD.",
    "WHITESPACE": "Whitespace for the reference (mapped to U+0020 and split on).",
    "NONSPACING_MARKS": "Deleted after NFD when stripping accents (the reference's category Mn).",
    "NFD_PROTECTED": "ICU's NFD decomposes these, the reference's NFD does not.",
    "LOWERCASE_FIXUPS": "code point -> reference lower case, where `tf.strings.lower` differs.",
    "CJK": "Ideographs the reference pads with spaces (each becomes its own word).",
    "PUNCTUATION": "Split off as single-character words (ASCII symbols and category P*).",
    "FAST_WORDPIECE_DISAGREES": "End-to-end FastWordpiece splits these differently from the reference.",
}


def _format(name, value):
    lines = [f"# {_DOCS[name]}"]
    if isinstance(value, dict):
        lines.append(f"{name} = {{")
        lines += [f"    0x{k:04X}: 0x{v:04X}," for k, v in value.items()]
        lines.append("}")
    else:
        lines.append(f"{name} = (")
        lines += [f"    (0x{a:04X}, 0x{b:04X})," for a, b in value]
        lines.append(")")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    import tokenizers

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    tables = compute_charsets()
    header = (
        '"""Character sets of the reference BERT normaliser / pre-tokenizer (generated).\n\n'
        "Generated by `python -m tfmoe.tokenize.generate_charsets` from tokenizers "
        f"{tokenizers.__version__}, tensorflow {tf.__version__}, tensorflow-text {tf_text.__version__}.\n"
        'Do not edit by hand. Ranges are inclusive (first, last) code points.\n"""\n'
    )
    source = header + "\n" + "\n\n".join(_format(k, v) for k, v in tables.items()) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(source)
    else:
        sys.stdout.write(source)


if __name__ == "__main__":
    sys.exit(main())
