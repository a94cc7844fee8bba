"""`WordpieceTokenizer` behaviour: shapes, special tokens, bad input, tf.data, serialization, export."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tokenizers
from conftest import BERT_TOKENIZER_JSON, BERT_VOCAB

from tfmoe.tokenize import WordpieceTokenizer, load_vocabulary, sentinel_token

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]", "[unused2]",
    "hello", "world", "the", "cat", "sat", "on", "mat", "un", "##able", "##s", "##ed", "jump",
    ",", ".", "!", "[", "]", "a", "b", "c", "##a", "##b", "##c", "ж", "##ж", "e", "##e",
]  # fmt: skip
ID = {token: i for i, token in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def tok():
    return WordpieceTokenizer(VOCAB)


def ids_of(*tokens):
    return [ID[t] for t in tokens]


def test_batch_gives_int32_ragged_ids(tok):
    ids = tok(tf.constant(["Hello, World!", "the cats jumped", ""]))
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    assert ids.to_list() == [
        ids_of("hello", ",", "world", "!"),
        ids_of("the", "cat", "##s", "jump", "##ed"),
        [],
    ]


def test_scalar_and_python_inputs(tok):
    scalar = tok("Unable cat")
    assert isinstance(scalar, tf.Tensor) and scalar.shape.rank == 1
    assert scalar.numpy().tolist() == ids_of("un", "##able", "cat")
    assert tok(["the mat"]).to_list() == [ids_of("the", "mat")]
    assert tok(np.array(["the mat", "cat"])).to_list() == [ids_of("the", "mat"), ids_of("cat")]


def test_rank_two_input_gives_nested_ragged(tok):
    ids = tok(tf.constant([["the", "cat sat"], ["mat", ""]]))
    assert ids.to_list() == [[ids_of("the"), ids_of("cat", "sat")], [ids_of("mat"), []]]


def test_sequence_length_pads_and_truncates():
    tok = WordpieceTokenizer(VOCAB, sequence_length=4)
    ids = tok(tf.constant(["the cat sat on the mat", "cat", ""]))
    assert isinstance(ids, tf.Tensor) and ids.dtype == tf.int32 and ids.shape == (3, 4)
    assert ids.numpy().tolist() == [
        ids_of("the", "cat", "sat", "on"),
        ids_of("cat", "[PAD]", "[PAD]", "[PAD]"),
        ids_of("[PAD]", "[PAD]", "[PAD]", "[PAD]"),
    ]
    assert tok("cat").numpy().tolist() == ids_of("cat", "[PAD]", "[PAD]", "[PAD]")


def test_unknown_words_and_max_chars_per_word_counts_characters():
    tok = WordpieceTokenizer(VOCAB, max_chars_per_word=5)
    # "жжжжж" is 5 characters but 10 bytes: split, not [UNK]; 6 characters: [UNK].
    expected = ids_of("ж", "##ж", "##ж", "##ж", "##ж", "c", "##a", "##b", "##a", "##b", "[UNK]")
    assert tok("жжжжж cabab dog").numpy().tolist() == expected
    assert tok("жжжжжж cababc").numpy().tolist() == ids_of("[UNK]", "[UNK]")


def test_special_token_ids_and_sentinels(tok):
    special = (
        tok.pad_token_id,
        tok.unknown_token_id,
        tok.cls_token_id,
        tok.sep_token_id,
        tok.mask_token_id,
    )
    assert special == (0, 1, 2, 3, 4)
    assert tok.sentinel_token_ids == (5, 6, 7)
    assert [tok.id_to_token(i) for i in tok.sentinel_token_ids] == [
        sentinel_token(i) for i in range(3)
    ]
    assert tok.vocabulary_size() == len(VOCAB) and tok.token_to_id("cat") == ID["cat"]


def test_special_tokens_in_strings(tok):
    assert tok("[CLS] cat [SEP]").numpy().tolist() == ids_of("[CLS]", "cat", "[SEP]")
    # Matched in the raw text, case-sensitively, as the reference does.
    assert tok("a[MASK]b [mask]").numpy().tolist() == ids_of("a", "[MASK]", "b", "[", "[UNK]", "]")
    literal = WordpieceTokenizer(VOCAB, special_tokens_in_strings=False)
    assert literal("[CLS] cat").numpy().tolist() == ids_of("[", "[UNK]", "]", "cat")


def test_bert_vocabulary_ids_and_case_mapping():
    tok = WordpieceTokenizer(BERT_VOCAB)
    assert (tok.pad_token_id, tok.unknown_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0, 100, 101, 102, 103,
    )  # fmt: skip
    sentinels = tok.sentinel_token_ids
    assert len(sentinels) >= 100 and sentinels[:2] == (1, 2) and sentinels[99] == 104
    # BERT lower-cases per character: ß stays ß (NFKC case folding would give "ss").
    tokens = [tok.id_to_token(i) for i in tok("Straße").numpy()]
    assert tokens == ["st", "##raße"]


def test_vocabulary_from_file_equals_list(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert load_vocabulary(path) == VOCAB
    from_file = WordpieceTokenizer(str(path))
    assert from_file.get_vocabulary() == VOCAB
    assert from_file("the cats").numpy().tolist() == ids_of("the", "cat", "##s")


def test_vocabulary_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(VOCAB) + "\n").encode("utf-8"))
    assert load_vocabulary(path) == VOCAB
    assert WordpieceTokenizer(str(path)).pad_token_id == VOCAB.index("[PAD]")


def test_vocabulary_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(("\n".join(VOCAB) + "\n").encode("utf-8") + b"caf\xe9\n")
    with pytest.raises(
        ValueError, match=rf"vocab.txt.*not UTF-8.*line {len(VOCAB) + 1}: byte 0xe9"
    ):
        load_vocabulary(path)


@pytest.mark.parametrize(
    "vocabulary, error, message",
    [
        (["a", "b"], ValueError, "vocabulary"),
        (["[UNK]", "a", "a"], ValueError, "duplicated"),
        (["[UNK]", "a b"], ValueError, "whitespace"),
        (["[UNK]", ""], ValueError, "empty"),
        ([], ValueError, "empty"),
        (5, TypeError, "vocabulary"),
        (["[UNK]", 3], TypeError, "vocabulary"),
        ("/no/such/vocab.txt", ValueError, "not found"),
    ],
)
def test_bad_vocabularies(vocabulary, error, message):
    with pytest.raises(error, match=message):
        WordpieceTokenizer(vocabulary)


@pytest.mark.parametrize(
    "kwargs", [{"sequence_length": 0}, {"sequence_length": 2.5}, {"max_chars_per_word": 0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        WordpieceTokenizer(VOCAB, **kwargs)


def test_sequence_length_needs_a_pad_token():
    with pytest.raises(ValueError, match=r"\[PAD\]"):
        WordpieceTokenizer(["[UNK]", "a"], sequence_length=4)


@pytest.mark.parametrize(
    "inputs",
    [tf.constant([1, 2]), np.array([1.5]), 5, [1, 2], tf.ragged.constant([["a"], ["b", "c"]])],
    ids=["int tensor", "float array", "int", "int list", "ragged"],
)
def test_non_string_inputs_raise_type_error(tok, inputs):
    with pytest.raises(TypeError, match="`inputs`"):
        tok(inputs)


def test_invalid_utf8_is_replaced_not_raised(tok):
    # Invalid bytes (and encoded surrogates) become U+FFFD, which BERT's cleaning deletes.
    ids = tok(
        tf.constant([b"c\xe9at", b"\xff\xfe", b"\xed\xa0\x80cat", b"the\xc0\xaf mat", b"[CLS]\xff"])
    )
    assert ids.to_list() == [
        ids_of("cat"),
        [],
        ids_of("cat"),
        ids_of("the", "mat"),
        ids_of("[CLS]"),
    ]


def test_invalid_utf8_matches_the_reference_on_replaced_text():
    reference = tokenizers.Tokenizer.from_file(str(BERT_TOKENIZER_JSON))
    reference.no_truncation()
    reference.no_padding()
    tok = WordpieceTokenizer(BERT_VOCAB)
    raw = [b"caf\xe9 au lait", b"\x80abc\xbf", b"na\xc3ve", b"ok \xf0\x9f\x98", b"\xe2\x82"]
    want = [
        reference.encode(r.decode("utf-8", "replace"), add_special_tokens=False).ids for r in raw
    ]
    assert tok(tf.constant(raw)).to_list() == want


def test_nul_bytes(tok):
    assert tok(tf.constant(["c\0at", "\0", "the\0 cat"])).to_list() == [
        ids_of("cat"),
        [],
        ids_of("the", "cat"),
    ]


def test_one_megabyte_strings(tok):
    words = "the cat sat on the mat, "
    big = words * (1_000_000 // len(words))
    ids = tok(tf.constant([big, "a" * 1_000_000, "ж" * 500_000]))
    lengths = ids.row_lengths().numpy().tolist()
    assert lengths[0] == 7 * (1_000_000 // len(words))
    assert ids[1].numpy().tolist() == ids_of("[UNK]") and ids[2].numpy().tolist() == ids_of("[UNK]")


def test_empty_batch(tok):
    ids = tok(tf.constant([], tf.string))
    assert ids.shape[0] == 0 and ids.dtype == tf.int32
    dense = WordpieceTokenizer(VOCAB, sequence_length=3)(tf.constant([], tf.string))
    assert dense.shape == (0, 3)


def test_inside_tf_data_and_tf_function(tok):
    texts = ["the cat", "hello, world!", "", "unable", "a[SEP]b", "жж"]
    expected = tok(tf.constant(texts)).to_list()
    batched = (
        tf.data.Dataset.from_tensor_slices(texts)
        .batch(4)
        .map(tok, num_parallel_calls=tf.data.AUTOTUNE)
    )
    assert [row for batch in batched for row in batch.to_list()] == expected
    unbatched = tf.data.Dataset.from_tensor_slices(texts).map(tok)
    assert [x.numpy().tolist() for x in unbatched] == expected
    compiled = tf.function(tok.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    assert compiled(tf.constant(texts)).to_list() == expected


def test_detokenize(tok):
    assert tok.detokenize(tok("the cats jumped")).numpy() == b"the cats jumped"
    dense = tf.constant(
        [
            ids_of("[CLS]", "un", "##able", "[SEP]", "[PAD]"),
            ids_of("[CLS]", "cat", "[SEP]", "[PAD]", "[PAD]"),
        ]
    )
    assert tok.detokenize(dense).numpy().tolist() == [b"unable", b"cat"]
    assert tok.detokenize([[ID["hello"], ID[","], ID["world"]]]).numpy().tolist() == [
        b"hello , world"
    ]
    with pytest.raises(TypeError, match="ids"):
        tok.detokenize(tf.constant([1.0]))


def test_detokenize_reads_ids_outside_the_vocabulary_as_unknown(tok):
    # A model's output layer may be wider than the vocabulary; tf-text's detokenizer
    # reads past its table on such ids (it crashed the process).
    size = tok.vocabulary_size()
    ids = [[ID["hello"], size, size + 1000, -3, ID["world"]]]
    assert tok.detokenize(ids).numpy().tolist() == [b"hello [UNK] [UNK] [UNK] world"]


def test_get_config_carries_the_vocabulary(tok):
    config = tok.get_config()
    assert config["vocabulary"] == VOCAB
    clone = WordpieceTokenizer.from_config(json.loads(json.dumps(config)))
    assert clone("the cats").numpy().tolist() == tok("the cats").numpy().tolist()


def test_keras_file_round_trip(tmp_path):
    tok = WordpieceTokenizer(VOCAB, sequence_length=6, name="tokenizer")
    inputs = keras.Input(shape=(), dtype="string")
    outputs = keras.layers.Embedding(len(VOCAB), 3)(tok(inputs))
    model = keras.Model(inputs, outputs)
    texts = tf.constant(["the cat sat", "hello world!"])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("tokenizer").get_vocabulary() == VOCAB
    np.testing.assert_allclose(loaded(texts), model(texts))


def test_saved_model_carries_the_tokenizer(tmp_path):
    tok = WordpieceTokenizer(VOCAB)
    archive = keras.export.ExportArchive()
    archive.track(tok)
    archive.add_endpoint(
        "serving_default",
        lambda text: {"token_ids": tok(text).to_tensor(default_value=-1)},
        input_signature=[tf.TensorSpec([None], tf.string, name="text")],
    )
    path = str(tmp_path / "saved")
    archive.write_out(path, verbose=False)
    texts = ["the cats", "a[SEP]b", "жжж c\xe9"]
    # A fresh interpreter with only tensorflow and tensorflow_text: no tfmoe.
    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        f"m = tf.saved_model.load({path!r})\n"
        f"out = m.signatures['serving_default'](text=tf.constant({texts!r}))\n"
        "print(json.dumps(out['token_ids'].numpy().tolist()))\n"
        "print(json.dumps('tfmoe' in sys.modules))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    ids_line, imported_line = result.stdout.strip().splitlines()[-2:]
    assert json.loads(imported_line) is False
    expected = tok(tf.constant(texts)).to_tensor(default_value=-1).numpy().tolist()
    assert json.loads(ids_line) == expected


def test_detokenize_first_inside_tf_function_then_eagerly():
    # The detokenizer is built lazily; built inside a traced function it must not be
    # bound to that graph, or later eager calls fail ("out of scope").
    tok = WordpieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"])
    traced = tf.function(lambda ids: tok.detokenize(ids))
    assert traced(tf.ragged.constant([[5, 6]])).numpy().tolist() == [b"hello world"]
    assert tok.detokenize([[6, 5]]).numpy().tolist() == [b"world hello"]
