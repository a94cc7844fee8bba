"""Exact parity of `WordpieceTokenizer` / `normalize_text` with the reference BERT tokenizer.

Reference: `tokenizers.Tokenizer.from_file("tests/data/bert_uncased_tokenizer.json")` (bert-base-uncased)
with `add_special_tokens=False` (its padding/truncation to 128, configured in
the JSON, switched off: we compare whole token sequences).
Run with `-s` to see the parity percentages.
"""

import functools
import gzip
import pathlib
import re

import pytest
import tensorflow as tf
import tensorflow_text as tf_text
import tokenizers
from conftest import BERT_TOKENIZER_JSON, BERT_VOCAB

from tfmoe.data import corpus
from tfmoe.tokenize import WordpieceTokenizer, charsets, normalize_text

HARD_CASES = pathlib.Path(__file__).parent / "data" / "tokenizer_hard_cases.txt"
_ESCAPE = re.compile(r"\\(U[0-9a-fA-F]{8}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|[ntr0\\])")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}


def read_hard_cases(path=HARD_CASES):
    """The hard-case file: one case a line, `#` comments, `<empty>`, backslash escapes."""
    cases = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line == "" or line.startswith("#"):
            continue
        if line == "<empty>":
            cases.append("")
            continue
        cases.append(
            _ESCAPE.sub(
                lambda m: _SIMPLE_ESCAPES.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), line
            )
        )
    return cases


@functools.lru_cache(maxsize=None)
def _reference(**normalizer_flags):
    reference = tokenizers.Tokenizer.from_file(str(BERT_TOKENIZER_JSON))
    reference.no_padding()
    reference.no_truncation()
    if normalizer_flags:
        reference.normalizer = tokenizers.normalizers.BertNormalizer(**normalizer_flags)
    return reference


@functools.lru_cache(maxsize=None)
def _tokenizer(**kwargs):
    return WordpieceTokenizer(str(BERT_VOCAB), **kwargs)


def _tokenize_in_batches(tokenizer, texts, batch_size=8192):
    ids = []
    for start in range(0, len(texts), batch_size):
        ids += tokenizer(tf.constant(texts[start : start + batch_size])).to_list()
    return ids


def assert_parity(name, texts, tokenizer, reference):
    want = [encoding.ids for encoding in reference.encode_batch(texts, add_special_tokens=False)]
    got = _tokenize_in_batches(tokenizer, texts)
    mismatches = [i for i, (w, g) in enumerate(zip(want, got)) if w != g]
    parity = 100.0 * (len(texts) - len(mismatches)) / len(texts)
    print(
        f"\n{name}: parity {parity:.4f}% ({len(texts) - len(mismatches)}/{len(texts)} lines identical)"
    )
    examples = "\n".join(
        f"  {texts[i][:80]!r}: want {want[i][:12]} got {got[i][:12]}" for i in mismatches[:5]
    )
    assert not mismatches, (
        f"{name}: parity {parity:.4f}%, {len(mismatches)} lines differ:\n{examples}"
    )
    return parity


def _gzip_lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().split("\n")


def test_parity_on_every_line_of_the_jargon_file():
    lines = _gzip_lines(corpus.JARGON_FILE)
    assert len(lines) > 40_000
    assert assert_parity("Jargon File", lines, _tokenizer(), _reference()) == 100.0


def test_parity_on_every_line_of_the_bundled_wordnet_glosses():
    lines = _gzip_lines(corpus.WORDNET_SUBSET_FILE)
    assert len(lines) > 23_000
    assert assert_parity("WordNet glosses", lines, _tokenizer(), _reference()) == 100.0


def test_parity_on_the_hard_cases():
    cases = read_hard_cases()
    assert len(cases) > 60 and "" in cases and any("\0" in c for c in cases)
    assert assert_parity("hard cases", cases, _tokenizer(), _reference()) == 100.0


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("strip_accents", [True, False])
def test_parity_on_the_hard_cases_for_each_normalisation(lowercase, strip_accents):
    flags = dict(lowercase=lowercase, strip_accents=strip_accents)
    assert_parity(
        f"hard cases {flags}",
        read_hard_cases(),
        _tokenizer(**flags),
        _reference(clean_text=True, handle_chinese_chars=True, **flags),
    )


def test_hard_cases_defeat_the_shortcuts():
    """The hard cases are hard: plain end-to-end FastWordpiece, and tf_text's own
    BERT normaliser (NFKC case folding), both disagree with the reference on them."""
    cases = read_hard_cases()
    want = [e.ids for e in _reference().encode_batch(cases, add_special_tokens=False)]
    tokenizer = _tokenizer()
    normalized = normalize_text(tf.constant(cases), pad_cjk=False, exact_whitespace=False)
    end_to_end_only = tokenizer._end_to_end.tokenize(normalized).to_list()
    fast_bert = tf_text.FastBertTokenizer(
        tokenizer.get_vocabulary(), token_out_type=tf.int32, lower_case_nfd_strip_accents=True
    )
    case_folded = fast_bert.tokenize(tf.constant(cases)).to_list()
    assert sum(w != g for w, g in zip(want, end_to_end_only)) >= 5
    assert sum(w != g for w, g in zip(want, case_folded)) >= 5


def _code_point_sample():
    """Every code point below U+3000, both sides of every charset boundary, and a stride."""
    sample = set(range(0x3000)) | set(range(0x3000, 0x110000, 101))
    for name, value in vars(charsets).items():
        if not name.isupper():
            continue
        if isinstance(value, tuple):
            for first, last in value:
                sample |= {first - 1, first, last, last + 1}
        elif isinstance(value, dict):
            sample |= set(value) | set(value.values())
    return sorted(c for c in sample if 0 <= c < 0x110000 and not 0xD800 <= c <= 0xDFFF)


def _all_code_points():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def _assert_code_point_parity(code_points):
    tokenizer, reference = _tokenizer(), _reference()
    for context in ("{}", "a{}b", "A{}"):
        assert_parity(
            f"{len(code_points)} code points in {context!r}",
            [context.format(chr(c)) for c in code_points],
            tokenizer,
            reference,
        )


def _assert_normalizer_parity(code_points):
    reference = tokenizers.normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    texts = [chr(c) for c in code_points] + ["A" + chr(c) for c in code_points]
    want = [reference.normalize_str(t) for t in texts]
    got = [s.decode("utf-8") for s in normalize_text(tf.constant(texts)).numpy()]
    mismatches = [(hex(ord(t[-1])), w, g) for t, w, g in zip(texts, want, got) if w != g]
    assert not mismatches, f"{len(mismatches)} differ, first: {mismatches[:5]}"


def test_code_point_sample_parity():
    _assert_code_point_parity(_code_point_sample())


def test_normalize_text_matches_the_reference_normalizer_on_sampled_code_points():
    _assert_normalizer_parity(_code_point_sample())


def test_normalize_text_matches_the_reference_normalizer_on_hard_cases():
    cases = read_hard_cases()
    for flags in (
        {},
        {"lowercase": False},
        {"strip_accents": False},
        {"lowercase": False, "strip_accents": False},
    ):
        reference = tokenizers.normalizers.BertNormalizer(
            **{"lowercase": True, "strip_accents": True, **flags}
        )
        want = [reference.normalize_str(c) for c in cases]
        got = [s.decode("utf-8") for s in normalize_text(tf.constant(cases), **flags).numpy()]
        assert got == want, flags


@pytest.mark.slow
def test_every_code_point_parity():
    _assert_code_point_parity(_all_code_points())


@pytest.mark.slow
def test_normalize_text_matches_the_reference_normalizer_on_every_code_point():
    _assert_normalizer_parity(_all_code_points())


def test_parity_when_the_vocabulary_holds_characters_fast_wordpiece_splits_differently():
    """With these characters in the vocabulary no [UNK] gives the difference away:
    only the routing on `charsets.FAST_WORDPIECE_DISAGREES` keeps the ids exact."""
    odd = [
        "\u2e43",
        "\U0002b820",
        "\u166d",
    ]  # new punctuation, CJK Ext E (not CJK to the reference), old punctuation
    vocab = ["[PAD]", "[UNK]", "x", "##x", "y", "##y"] + odd + ["##" + c for c in odd]
    model = tokenizers.models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    reference = tokenizers.Tokenizer(model)
    reference.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    reference.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    texts = [f"x{c}y" for c in odd] + [c * 3 for c in odd] + [f"{c} x{c}" for c in odd]
    assert_parity("odd characters", texts, WordpieceTokenizer(vocab), reference)


@pytest.mark.slow
def test_charsets_module_is_what_the_generator_writes():
    from tfmoe.tokenize.generate_charsets import compute_charsets

    for name, value in compute_charsets().items():
        assert getattr(charsets, name) == value, (
            f"charsets.{name} is stale: run tfmoe.tokenize.generate_charsets"
        )
