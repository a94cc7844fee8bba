"""`WordpieceTokenizer` start-up and small requests: graph size, one shared trace, the eager
fast path, and parity of the recoded path (`tfmoe.tokenize.recoding`) where it matters."""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text
import tokenizers
from conftest import BERT_TOKENIZER_JSON, BERT_VOCAB

from tfmoe.tokenize import WordpieceTokenizer, charsets, recoding
from tfmoe.tokenize.vocabulary import load_vocabulary

# Plain rows (ASCII, curly quotes, box drawing), rows that need recoding, and the edges
# between them: special tokens, "[" without one, words at and over 100 characters.
TEXTS = [
    "The quick brown fox.",
    "“Quoted” — ‘text’ · with ─── box drawing │ and\u00a0nbsp",
    "a[SEP]b [CLS] [notspecial] [sep] [",
    "Café naïve ÉCOLE Straße ΣΑΣ İstanbul",
    "x" * 100 + " " + "y" * 101 + " " + "é" * 100 + " " + "é" * 101,
    "─" * 100 + " " + "─" * 101,
    "中文字符 and 日本語のテキスト",
    "",
    "\t\n\r  ",
    "tab\tseparated\nlines\r",
]


@functools.lru_cache(maxsize=None)
def _tokenizer(**kwargs):
    return WordpieceTokenizer(str(BERT_VOCAB), **kwargs)


@functools.lru_cache(maxsize=None)
def _reference(max_chars_per_word=100):
    reference = tokenizers.Tokenizer.from_file(str(BERT_TOKENIZER_JSON))
    reference.no_padding()
    reference.no_truncation()
    reference.model = tokenizers.models.WordPiece.from_file(
        str(BERT_VOCAB), unk_token="[UNK]", max_input_chars_per_word=max_chars_per_word
    )
    return reference


def _want(texts, max_chars_per_word=100):
    return [
        e.ids for e in _reference(max_chars_per_word).encode_batch(texts, add_special_tokens=False)
    ]


def test_tokenizer_graph_is_small_and_has_no_control_flow():
    # Every new graph (tf.data pipeline, tf.function, export) optimises and instantiates
    # each of these ops when it starts; conditionals add functions to instantiate.
    graph = _tokenizer()._tokenize_batch_graph.get_concrete_function().graph.as_graph_def()
    ops = [node.op for node in graph.node]
    assert not {"If", "StatelessIf", "While", "StatelessWhile", "Assert"} & set(ops), ops
    assert not graph.library.function
    assert len(ops) <= 60, f"{len(ops)} ops: start-up of every pipeline grows with them"


def test_one_trace_serves_every_graph_and_eager_call():
    tok = WordpieceTokenizer(str(BERT_VOCAB))
    texts = tf.constant(TEXTS)
    eager = tok(texts).to_list()
    for _ in range(2):
        dataset = tf.data.Dataset.from_tensor_slices(TEXTS).batch(4).map(tok)
        assert [row for batch in dataset for row in batch.to_list()] == eager
    assert tf.function(tok.tokenize)(texts).to_list() == eager
    assert tok._tokenize_batch_graph.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("rows", [1, 3, 40])
def test_eager_fast_path_gives_the_graph_ids(rows):
    tok = _tokenizer()
    compiled = tf.function(tok.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    for text in TEXTS:
        batch = tf.constant([text] * rows)
        assert tok(batch).to_list() == compiled(batch).to_list(), text
    assert tok(TEXTS[0]).numpy().tolist() == compiled(tf.constant(TEXTS[:1])).to_list()[0]


def test_parity_on_plain_and_recoded_rows():
    assert _tokenizer()(tf.constant(TEXTS)).to_list() == _want(TEXTS)


@pytest.mark.parametrize("max_chars_per_word", [1, 3, 6, 999, 1000])
def test_parity_for_each_word_length_limit(max_chars_per_word):
    """Recoded text counts characters through FastWordpiece's byte limit; plain rows
    limit words in their pattern (RE2 counts to 999: above, no row is plain)."""
    texts = TEXTS + ["ab abc abcdef abcdefg жжж жжжжжжж [MASK] [UNK]"]
    texts += [" ".join("a" * n for n in (999, 1000, 1001))]
    tok = WordpieceTokenizer(str(BERT_VOCAB), max_chars_per_word=max_chars_per_word)
    assert tok(tf.constant(texts)).to_list() == _want(texts, max_chars_per_word)


def test_recoded_characters_are_word_characters_for_fast_wordpiece():
    """The recoding relies on FastWordpiece taking planes 15 and 16 (private use) for
    word characters, as the probe in `generate_charsets` classifies characters."""
    probe = tf_text.FastWordpieceTokenizer(["[UNK]", "x", "##x"], token_out_type=tf.int32)
    code_points = [0xF0000, 0xF0041, 0xFFFFD, 0x100000, 0x10F000, 0x10FF00, 0x10FFFD]
    ids = probe.tokenize(tf.constant(["x" + chr(c) + "x" for c in code_points])).to_list()
    assert ids == [[0]] * len(code_points)


def test_plain_rows_need_nothing_but_ascii_lower_casing():
    """Every non-ASCII character a plain row may hold is left alone by the reference normaliser."""
    normalizer = tokenizers.normalizers.BertNormalizer(
        lowercase=True, strip_accents=True, handle_chinese_chars=False
    )
    other, word = recoding._plain_classes()
    allowed = np.flatnonzero((other | word) & (np.arange(len(other)) >= 0x80))
    assert len(allowed) > 300
    for c in allowed.tolist():
        if chr(c).isspace():
            assert normalizer.normalize_str(chr(c)) == " ", hex(c)
        else:
            assert normalizer.normalize_str(chr(c)) == chr(c), hex(c)


def test_vocabulary_with_unmatchable_tokens_keeps_its_ids():
    # A token holding a private-use character can never be matched (cleaning deletes
    # those); it is left out of FastWordpiece's vocabulary, and the other ids stay.
    vocabulary = ["[PAD]", "[UNK]", "a\ue000", "\U000f0061", "cat", "##s"]
    tok = WordpieceTokenizer(vocabulary)
    assert tok(["cats", "caté cat\ue000s", "\U000f0061"]).to_list() == [[4, 5], [1, 4, 5], []]
    assert load_vocabulary(vocabulary) == vocabulary


def test_parity_when_the_vocabulary_holds_characters_icu_decomposes_and_the_reference_does_not():
    """With such characters (or their decompositions) in the vocabulary, they must stay
    whole through ICU's NFD, as in the reference: the recoding then protects them."""
    protected = [chr(c) for first, last in charsets.NFD_PROTECTED for c in range(first, last + 1)][
        :3
    ]
    decomposed = [tf_text.normalize_utf8(c, "NFD").numpy().decode("utf-8") for c in protected]
    pieces = sorted(set(protected) | set("".join(decomposed)))
    vocab = ["[PAD]", "[UNK]", "x", "##x"] + pieces + ["##" + p for p in pieces]
    model = tokenizers.models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    reference = tokenizers.Tokenizer(model)
    reference.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    reference.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    texts = [f"x{c}x" for c in protected] + ["".join(protected)] + [f"{d} x{d}" for d in decomposed]
    tok = WordpieceTokenizer(vocab)
    assert tok._recoding._protect is not None
    want = [e.ids for e in reference.encode_batch(texts)]
    assert tok(tf.constant(texts)).to_list() == want
    assert _tokenizer()._recoding._protect is None  # the BERT vocabulary needs no protection


@pytest.mark.parametrize("max_chars_per_word", [3, 100])
def test_python_and_re2_plain_row_patterns_agree(max_chars_per_word):
    other, word = recoding._plain_classes()
    plain = np.flatnonzero(other | word)
    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in rng.choice(plain, 200)] + [
        "é",
        "\u0301",
        "Ж",
        "中",
        "\x00",
        "\U0001f600",
        "a",
        " ",
    ]
    texts = ["".join(rng.choice(alphabet, rng.integers(0, 12))) for _ in range(3000)]
    texts += ["a" * n for n in range(1, 8)] + ["─" * n + " b" for n in range(1, 8)]
    python = recoding.plain_rows_python_regex(max_chars_per_word)
    re2 = tf.strings.regex_full_match(
        tf.constant(texts), recoding.plain_rows_pattern(max_chars_per_word)
    ).numpy()
    assert [bool(python.fullmatch(t)) for t in texts] == re2.tolist()
    assert 0.05 < re2.mean() < 0.95


def test_eager_batch_with_a_long_row_then_a_special_token():
    tok = _tokenizer()
    texts = ["word " * 300, "a [SEP] b"]
    compiled = tf.function(tok.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    assert tok(texts).to_list() == compiled(tf.constant(texts)).to_list() == _want(texts)
