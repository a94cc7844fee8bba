"""`SentencePieceTokenizer`: id-for-id parity with the `transformers` T5 tokenizer, graphs, serialization.

A small unigram `spiece.model` (T5 settings) is trained here on half the WordNet
glosses bundled with tfmoe; parity is checked on lines of the Jargon File (held out from
training), on the shared hard cases and on T5-specific ones (sentinels, `</s>`).
The reference is `transformers.T5TokenizerFast` loaded from that file, as it comes.
"""

import gzip
import io
import random
import subprocess
import sys
import unicodedata

import keras
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
from test_tokenize_parity import read_hard_cases

from tfmoe.data import corpus
from tfmoe.tokenize import SentencePieceTokenizer

transformers = pytest.importorskip("transformers")

VOCAB_SIZE = 1000
EXTRA_IDS = 100

# T5 specifics: sentinels in and between words, `</s>` and other specials in the
# text, spellings that normalise to them, whitespace around and between them.
T5_CASES = [
    "",
    " ",
    "  \t\n ",
    "Hello world",
    "  leading and trailing spaces   ",
    "runs   of\t\twhitespace\n\nand\r\nnewlines",
    "a<extra_id_0>b",
    "a <extra_id_0> b",
    "a  <extra_id_0>  b",
    "<extra_id_0>",
    "<extra_id_0><extra_id_1><extra_id_99>",
    "<extra_id_0> <extra_id_1>",
    "The <extra_id_0> walks in <extra_id_1> park",
    "<extra_id_5>word word<extra_id_6>",
    "mid<extra_id_42>word and<extra_id_7>.",
    "<extra_id_100> <extra_id_-1> <extra_id_05> <extra_id_> <extra_id_0 > extra_id_0",
    "<<extra_id_1>> <</s>>",
    "x</s>y",
    "x </s> y </s>",
    "</s></s>",
    "<pad> <unk> <s> </S>",
    "pad<pad>unk<unk>eos</s>",
    "\uff1cextra_id_0\uff1e a\uff1cextra_id_0\uff1eb \uff1c/s\uff1e \uff1cpad\uff1e",
    "<extra_id_\uff10> \u00a0<extra_id_3>\u3000b\u2003",
    "café naïve résumé Ångström Łódź Dvořák",
    "e\u0301 cafe\u0301 \u00b4a a\u00b4b \u00a8 ~ \u02dc",
    "漢字とひらがなとカタカナ 中文句子没有空格",
    "emoji 🙂🚀👍🏽 👨‍👩‍👧 flags 🇫🇷",
    "ＡＢＣ ｆｕｌｌｗｉｄｔｈ １２３ ﬁ ﬀ ½ ™ …",
    "a\u0085b a\u1680b a\u2028b x\u200by \ufeffz \u00ad soft",
    "3.14159 1,000,000 -42 0000000 1000 10000 100000 2024-01-31",
    "----------------------------------------------------------------",
    "\u2581 a\u2581b \u2581\u2581",
    "tab\there\x00nul\x01ctl",
]


def _lines(path, column=None):
    with gzip.open(path, "rt", encoding="utf-8") as file:
        lines = [line.rstrip("\n") for line in file]
    return [line.split("\t")[column] for line in lines[1:]] if column is not None else lines


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A directory holding `spiece.model`: unigram, T5's special pieces, trained on the WordNet glosses."""
    directory = tmp_path_factory.mktemp("t5_spiece")
    glosses = _lines(corpus.WORDNET_SUBSET_FILE, column=-1)[::2]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(glosses),
        model_writer=model,
        model_type="unigram",
        vocab_size=VOCAB_SIZE,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        shrinking_factor=0.5,  # fewer pruning rounds: trains in half the time
        num_threads=2,
        minloglevel=2,
    )
    (directory / "spiece.model").write_bytes(model.getvalue())
    return directory


@pytest.fixture(scope="module")
def proto_path(model_dir):
    return str(model_dir / "spiece.model")


@pytest.fixture(scope="module")
def reference(model_dir):
    """`transformers`' T5 tokenizer for the same file (100 extra ids by default)."""
    return transformers.T5TokenizerFast.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def tokenizer(proto_path):
    return SentencePieceTokenizer(proto_path)


@pytest.fixture(scope="module")
def held_out_lines():
    """Lines of the Jargon File (not seen in training), every fifth one, as they are (indentation kept)."""
    return _lines(corpus.JARGON_FILE)[::5]


def _normalised_otherwise_by_the_reference(text):
    """Whether `text` holds a letter with combining marks, of 6 UTF-8 bytes or more, that NFKC changes as a whole.

    The reference normalises such grapheme clusters one character at a time (so
    `a` + U+0300 stays two characters), SentencePiece as a whole (`à`): a known
    difference (see `tfmoe.tokenize.sentencepiece_tokenizer`).
    """
    clusters, cluster = [], ""
    for char in text:
        if cluster and unicodedata.category(char).startswith("M"):
            cluster += char
        else:
            clusters.append(cluster)
            cluster = char
    clusters.append(cluster)
    return any(
        len(c.encode()) >= 6
        and unicodedata.normalize("NFKC", c)
        != "".join(unicodedata.normalize("NFKC", char) for char in c)
        for c in clusters
    )


@pytest.fixture(scope="module")
def hard_cases():
    """The shared hard cases and `T5_CASES`, less the (few) known differences."""
    cases = read_hard_cases() + T5_CASES
    kept = [text for text in cases if not _normalised_otherwise_by_the_reference(text)]
    assert len(cases) - len(kept) <= 2
    return kept


def _reference_ids(reference, texts, add_eos):
    return reference(texts, add_special_tokens=add_eos)["input_ids"]


def _assert_same_ids(texts, ids, expected):
    different = [(text, got, want) for text, got, want in zip(texts, ids, expected) if got != want]
    assert not different, f"{len(different)} of {len(texts)} differ, first: {different[:3]}"
    assert len(ids) == len(expected) == len(texts)


# Vocabulary.


def test_vocabulary_matches_the_reference(tokenizer, reference):
    assert tokenizer.vocabulary_size() == len(reference) == VOCAB_SIZE + EXTRA_IDS
    assert tokenizer.get_vocabulary() == reference.convert_ids_to_tokens(
        list(range(len(reference)))
    )
    assert tokenizer.pad_token_id == reference.pad_token_id == 0
    assert tokenizer.eos_token_id == tokenizer.end_token_id == reference.eos_token_id == 1
    assert tokenizer.unknown_token_id == reference.unk_token_id == 2
    sentinels = [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]
    assert list(tokenizer.sentinel_token_ids) == reference.convert_tokens_to_ids(sentinels)
    assert tokenizer.sentinel_token_ids[0] == tokenizer.vocabulary_size() - 1
    assert [tokenizer.token_to_id(token) for token in sentinels] == list(
        tokenizer.sentinel_token_ids
    )
    assert tokenizer.id_to_token(tokenizer.vocabulary_size() - 1) == "<extra_id_0>"
    assert tokenizer.special_token_ids[:3] == (0, 1, 2)
    with pytest.raises(KeyError):
        tokenizer.token_to_id("<extra_id_100>")


# Parity with the reference.


@pytest.mark.parametrize("add_eos", [False, True])
def test_parity_on_held_out_lines(proto_path, reference, held_out_lines, add_eos):
    tokenizer = SentencePieceTokenizer(proto_path, add_eos=add_eos)
    ids = tokenizer(held_out_lines).to_list()
    _assert_same_ids(held_out_lines, ids, _reference_ids(reference, held_out_lines, add_eos))
    # The lines hold equally scored segmentations (digit and dash runs), and unknown characters.
    assert any(tokenizer.unknown_token_id in row for row in ids)


@pytest.mark.parametrize("add_eos", [False, True])
def test_parity_on_hard_cases(proto_path, reference, hard_cases, add_eos):
    tokenizer = SentencePieceTokenizer(proto_path, add_eos=add_eos)
    ids = tokenizer(hard_cases).to_list()
    _assert_same_ids(hard_cases, ids, _reference_ids(reference, hard_cases, add_eos))
    # One at a time (scalar inputs) gives the same ids.
    assert [tokenizer(text).numpy().tolist() for text in T5_CASES] == ids[-len(T5_CASES) :]


def test_sentinels_and_eos_in_text_are_single_ids(tokenizer, reference):
    ids = tokenizer("The <extra_id_0> walks in <extra_id_1> park</s>").numpy().tolist()
    sentinel_0, sentinel_1 = tokenizer.sentinel_token_ids[:2]
    assert ids.count(sentinel_0) == ids.count(sentinel_1) == 1 and ids[-1] == tokenizer.eos_token_id
    assert ids == _reference_ids(
        reference, "The <extra_id_0> walks in <extra_id_1> park</s>", False
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jargon", "wordnet"])
def test_parity_on_whole_corpora(tokenizer, reference, name):
    lines = (
        _lines(corpus.JARGON_FILE)
        if name == "jargon"
        else _lines(corpus.WORDNET_SUBSET_FILE, column=-1)
    )
    _assert_same_ids(lines, tokenizer(lines).to_list(), _reference_ids(reference, lines, False))


def test_differences_from_the_sentencepiece_package_are_ties(tokenizer, proto_path, held_out_lines):
    """On plain lines, where `sentencepiece` segments otherwise, both segmentations score the same.

    It breaks ties by float32 round-off; the reference and the tokenizer by rule.
    """
    processor = spm.SentencePieceProcessor(model_file=proto_path)
    texts = held_out_lines
    ids = tokenizer(texts).to_list()
    expected = processor.encode(texts)
    scores = np.array(
        [processor.get_score(i) for i in range(processor.get_piece_size())], np.float64
    )
    different = [(got, want) for got, want in zip(ids, expected) if got != want]
    assert len(different) < 0.01 * len(texts)
    for got, want in different:
        assert sorted(got) == sorted(want) and scores[got].sum() == pytest.approx(
            scores[want].sum(), abs=1e-6
        )


# Detokenization.


def _reference_decode(reference, ids, skip_special_tokens):
    if not skip_special_tokens:
        # Pad and eos are dropped, the other special tokens written out.
        ids = [i for i in ids if i not in (reference.pad_token_id, reference.eos_token_id)]
    return reference.decode(ids, skip_special_tokens=skip_special_tokens)


@pytest.mark.parametrize("skip_special_tokens", [False, True])
def test_detokenize_matches_the_reference_decode(
    tokenizer, reference, held_out_lines, hard_cases, skip_special_tokens
):
    rows = _reference_ids(reference, held_out_lines[:3000] + hard_cases, True)
    # Random ids too: sentinels, pad, eos and unk anywhere, first included.
    rng = random.Random(0)
    special = [0, 1, 2] + list(tokenizer.sentinel_token_ids[:5])
    rows += [
        [
            rng.choice(special) if rng.random() < 0.3 else rng.randrange(3, VOCAB_SIZE)
            for _ in range(rng.randrange(12))
        ]
        for _ in range(500)
    ]
    texts = tokenizer.detokenize(
        tf.ragged.constant(rows, tf.int32), skip_special_tokens=skip_special_tokens
    )
    texts = [text.decode("utf-8") for text in texts.numpy()]
    expected = [_reference_decode(reference, row, skip_special_tokens) for row in rows]
    different = [(row, got, want) for row, got, want in zip(rows, texts, expected) if got != want]
    assert not different, f"{len(different)} of {len(rows)} differ, first: {different[:3]}"


def test_detokenize_round_trip_and_shapes(tokenizer):
    text = "The <extra_id_0> walks in <extra_id_1> park."
    ids = tokenizer(text)
    assert (
        tokenizer.detokenize(ids).numpy().decode() == "The<extra_id_0> walks in<extra_id_1> park."
    )
    assert (
        tokenizer.detokenize(ids, skip_special_tokens=True).numpy().decode() == "The walks in park."
    )
    batch = tokenizer.detokenize(tokenizer(["hello world", ""]))
    assert batch.shape == [2] and batch.numpy().tolist() == [b"hello world", b""]
    dense = SentencePieceTokenizer(tokenizer.proto, sequence_length=8, add_eos=True)(
        ["hello world"]
    )
    assert tokenizer.detokenize(dense).numpy().tolist() == [b"hello world"]  # pad and eos dropped
    assert tokenizer.detokenize([[tokenizer.vocabulary_size(), -1]]).numpy().tolist() == [
        b"<unk><unk>"
    ]
    assert tokenizer.detokenize([]).numpy() == b""
    with pytest.raises(TypeError, match="`ids`"):
        tokenizer.detokenize([0.5, 1.5])
    with pytest.raises(ValueError, match="`ids`"):
        tokenizer.detokenize(tf.zeros([1, 1, 1], tf.int32))


# Shapes and options.


def test_output_shapes(proto_path, tokenizer):
    texts = ["hello world", "a <extra_id_0> b c d e f g h", ""]
    ragged = tokenizer(texts)
    assert isinstance(ragged, tf.RaggedTensor) and ragged.dtype == tf.int32 and ragged.shape[0] == 3
    scalar = tokenizer("hello world")
    assert isinstance(scalar, tf.Tensor) and scalar.numpy().tolist() == ragged[0].numpy().tolist()
    nested = tokenizer([texts, texts])
    assert nested.shape[:2] == [2, 3] and nested.to_list() == [ragged.to_list()] * 2

    dense = SentencePieceTokenizer(proto_path, sequence_length=6, add_eos=True)(texts)
    assert dense.shape == [3, 6] and dense.dtype == tf.int32
    for row, ids in zip(dense.numpy().tolist(), ragged.to_list()):
        full = ids + [tokenizer.eos_token_id]
        assert row == (full + [tokenizer.pad_token_id] * 6)[:6]  # padded, or truncated at the end
    assert SentencePieceTokenizer(proto_path, sequence_length=4)("").numpy().tolist() == [
        0,
        0,
        0,
        0,
    ]


def test_special_tokens_in_strings_off(proto_path, tokenizer, held_out_lines):
    plain = SentencePieceTokenizer(proto_path, special_tokens_in_strings=False)
    lines = held_out_lines[:500]
    assert plain(lines).to_list() == tokenizer(lines).to_list()
    ids = plain(["x</s>y <pad> <unk> <extra_id_0> \uff1cextra_id_1\uff1e"]).flat_values.numpy()
    assert not set(ids) & ({0, 1} | set(tokenizer.sentinel_token_ids))


def test_fewer_extra_ids(proto_path):
    tokenizer = SentencePieceTokenizer(proto_path, extra_ids=3)
    assert tokenizer.vocabulary_size() == VOCAB_SIZE + 3
    assert tokenizer.sentinel_token_ids == (VOCAB_SIZE + 2, VOCAB_SIZE + 1, VOCAB_SIZE)
    ids = tokenizer("<extra_id_2><extra_id_3>").numpy().tolist()
    assert ids[0] == VOCAB_SIZE and len(ids) > 2  # <extra_id_3> is text


# Graphs: tf.data, tf.function, SavedModel.


def test_runs_in_tf_data(tokenizer, hard_cases):
    dataset = tf.data.Dataset.from_tensor_slices(hard_cases).batch(16).map(tokenizer)
    ids = [row for batch in dataset for row in batch.to_list()]
    assert ids == tokenizer(hard_cases).to_list()


def test_runs_in_tf_function(tokenizer, hard_cases):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(texts):
        ids = tokenizer(texts)
        return ids, tokenizer.detokenize(ids)

    ids, texts = tokenize(tf.constant(hard_cases))
    assert ids.to_list() == tokenizer(hard_cases).to_list()
    assert texts.numpy().tolist() == tokenizer.detokenize(tokenizer(hard_cases)).numpy().tolist()


def _save_tokenizer_module(path, tokenizer):
    """Saves a `tf.Module` with `tokenize` / `detokenize` signatures around `tokenizer`."""
    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
        lambda texts: module.tokenizer(texts), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    module.detokenize = tf.function(
        lambda ids: module.tokenizer.detokenize(ids),
        input_signature=[tf.TensorSpec([None, None], tf.int32)],
    )
    tf.saved_model.save(module, path)


def test_saved_model(proto_path, hard_cases, tmp_path):
    tokenizer = SentencePieceTokenizer(proto_path, add_eos=True, sequence_length=32)
    expected = tokenizer(hard_cases).numpy()
    _save_tokenizer_module(str(tmp_path / "saved"), tokenizer)
    del tokenizer
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    ids = restored.tokenize(tf.constant(hard_cases))
    np.testing.assert_array_equal(ids.numpy(), expected)
    texts = restored.detokenize(ids).numpy()
    assert (
        texts.tolist() == SentencePieceTokenizer(proto_path).detokenize(expected).numpy().tolist()
    )


@pytest.mark.slow
def test_saved_model_in_a_fresh_process(proto_path, tmp_path):
    """Loaded where no tokenizer of that model exists yet, the SavedModel brings its own."""
    module = tf.Module()
    module.tokenizer = SentencePieceTokenizer(proto_path, add_eos=True)
    module.tokenize = tf.function(
        lambda texts: module.tokenizer(texts).to_tensor(-1),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    texts = T5_CASES
    expected = module.tokenize(tf.constant(texts)).numpy()
    tf.saved_model.save(module, str(tmp_path / "saved"))
    np.save(
        tmp_path / "texts.npy",
        np.array([t.encode() for t in texts], dtype=object),
        allow_pickle=True,
    )
    script = (
        "import sys, numpy as np, tensorflow as tf, tensorflow_text\n"
        "texts = np.load(sys.argv[1] + '/texts.npy', allow_pickle=True)\n"
        "ids = tf.saved_model.load(sys.argv[1] + '/saved').tokenize(tf.constant(list(texts))).numpy()\n"
        "np.save(sys.argv[1] + '/ids.npy', ids)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), expected)


def test_survives_keras_clear_session(proto_path):
    tokenizer = SentencePieceTokenizer(proto_path)
    expected = tokenizer(T5_CASES).to_list()
    keras.utils.clear_session()  # clears TF's kernel cache, and with it kernel-owned resources
    assert tokenizer(T5_CASES).to_list() == expected


# Serialization.


def test_config_round_trip_needs_no_file(proto_path, hard_cases, tmp_path):
    model_bytes = open(proto_path, "rb").read()
    copy = tmp_path / "spiece.model"
    copy.write_bytes(model_bytes)
    tokenizer = SentencePieceTokenizer(str(copy), sequence_length=40, add_eos=True, extra_ids=10)
    config = tokenizer.get_config()
    copy.unlink()
    assert str(copy) not in str(config)
    rebuilt = SentencePieceTokenizer.from_config(config)
    assert rebuilt.proto == model_bytes
    assert (rebuilt.sequence_length, rebuilt.add_eos, rebuilt.extra_ids) == (40, True, 10)
    np.testing.assert_array_equal(rebuilt(hard_cases).numpy(), tokenizer(hard_cases).numpy())
    # Through Keras' registry too.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert isinstance(restored, SentencePieceTokenizer)
    assert restored.get_vocabulary() == tokenizer.get_vocabulary()


# Bad input.


def test_bad_model_arguments(proto_path, tmp_path):
    with pytest.raises(ValueError, match="`proto`.*missing.model"):
        SentencePieceTokenizer(str(tmp_path / "missing.model"))
    text_file = tmp_path / "vocab.txt"
    text_file.write_text("hello\nworld\n")
    for not_a_model in (str(text_file), b"not a sentencepiece model", b""):
        with pytest.raises(ValueError, match="`proto` is not a SentencePiece model"):
            SentencePieceTokenizer(not_a_model)
    with pytest.raises(TypeError, match="`proto`"):
        SentencePieceTokenizer(123)
    with pytest.raises(ValueError, match="`proto`"):
        SentencePieceTokenizer()
    with pytest.raises(ValueError, match="`proto_base64`"):
        SentencePieceTokenizer(proto_base64="not base64!")
    with pytest.raises(ValueError, match="`sequence_length`"):
        SentencePieceTokenizer(proto_path, sequence_length=0)
    with pytest.raises(ValueError, match="`extra_ids`"):
        SentencePieceTokenizer(proto_path, extra_ids=-1)


def test_models_t5_cannot_use(tmp_path):
    def train(**options):
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["the quick brown fox jumps over the lazy dog"] * 20),
            model_writer=model,
            minloglevel=2,
            hard_vocab_limit=False,
            **{"vocab_size": 30, **options},
        )
        return model.getvalue()

    with pytest.raises(ValueError, match="`proto` is not a unigram"):
        SentencePieceTokenizer(train(model_type="bpe", pad_id=0, eos_id=1, unk_id=2, bos_id=-1))
    with pytest.raises(ValueError, match="`proto` defines no pad"):
        SentencePieceTokenizer(train(model_type="unigram", eos_id=1, unk_id=0, bos_id=-1))
    with pytest.raises(ValueError, match="`proto` uses byte fallback"):
        SentencePieceTokenizer(
            train(
                model_type="unigram",
                pad_id=0,
                eos_id=1,
                unk_id=2,
                bos_id=-1,
                byte_fallback=True,
                vocab_size=300,
            )
        )


def test_non_string_inputs(tokenizer):
    for bad in (
        123,
        [1, 2],
        tf.constant([1, 2]),
        np.array([1.0]),
        tf.ragged.constant([["a"], ["b", "c"]]),
    ):
        with pytest.raises(TypeError, match="`inputs`"):
            tokenizer.tokenize(bad)
