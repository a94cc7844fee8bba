"""`learn_vocabulary` and its command line tool."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfmoe.data import corpus
from tfmoe.tokenize import (
    WordpieceTokenizer,
    default_reserved_tokens,
    learn_vocabulary,
    normalize_text,
)
from tfmoe.tokenize.learn import _fit_to_size
from tfmoe.tokenize.learn import main as learn_main

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Jumping foxes are quicker than sleeping dogs!",
    "Naïve café owners serve crème brûlée; CAFÉS everywhere.",
    "Tokenizers split words into word pieces: tokenization, tokenized, tokens.",
    "数据 and 中文 characters become single tokens.",
] * 20


def _learn(corpus=CORPUS, size=200, **kwargs):
    return learn_vocabulary(corpus, size, **kwargs)


def test_learned_vocabulary_layout_and_size():
    vocab = _learn()
    assert len(vocab) <= 200 and len(set(vocab)) == len(vocab)
    assert vocab[: len(default_reserved_tokens())] == default_reserved_tokens()
    # Normalised like the tokenizer: lower case, no accents.
    assert "q" in vocab and "Q" not in vocab and "e" in vocab and "é" not in vocab
    assert "中" in vocab and "##o" in vocab


def test_learned_vocabulary_tokenizes_its_corpus_without_unknowns():
    vocab = _learn()
    tok = WordpieceTokenizer(vocab)  # FastWordpiece accepts it
    ids = tok(tf.constant(CORPUS)).flat_values.numpy()
    assert ids.size > 0 and not np.any(ids == tok.unknown_token_id)
    assert tok.sentinel_token_ids == tuple(range(5, 105))
    # Frequent words became whole pieces.
    assert tok("the").numpy().tolist() == [tok.token_to_id("the")]


def test_dataset_input_and_reserved_tokens():
    dataset = tf.data.Dataset.from_tensor_slices(CORPUS).batch(7)
    reserved = ["[PAD]", "[UNK]", "<s>"]
    cased = dict(lowercase=False, strip_accents=False)
    vocab = learn_vocabulary(dataset, 150, reserved_tokens=reserved, **cased)
    assert vocab[:3] == reserved and len(vocab) <= 150
    assert "T" in vocab and "é" in vocab and "t" in vocab
    # Scalar elements give the same vocabulary as batches.
    assert (
        learn_vocabulary(tf.data.Dataset.from_tensor_slices(CORPUS), 150, reserved, **cased)
        == vocab
    )


def test_small_sizes_keep_every_character():
    vocab = _learn(size=120, reserved_tokens=["[UNK]"])
    assert len(vocab) <= 120
    normalized = normalize_text(tf.constant(CORPUS)).numpy()
    characters = {c for text in normalized for c in text.decode("utf-8") if not c.isspace()}
    assert characters <= set(vocab)


def test_fit_to_size_drops_the_rarest_pieces_first():
    tokens = ["[UNK]", "a", "b", "##a", "##b", "ab", "ba", "##ab", "aba"]
    assert _fit_to_size(tokens, 7, ["[UNK]"]) == ["[UNK]", "a", "b", "##a", "##b", "ab", "ba"]
    assert _fit_to_size(tokens, 20, ["[UNK]"]) == tokens
    with pytest.raises(ValueError, match="vocabulary_size"):
        _fit_to_size(tokens, 4, ["[UNK]"])


def test_learn_errors():
    with pytest.raises(ValueError, match="reserved_tokens"):
        learn_vocabulary(CORPUS, 100, reserved_tokens=["[PAD]"])
    with pytest.raises(ValueError, match="vocabulary_size"):
        learn_vocabulary(CORPUS, 50)  # fewer than the 105 reserved tokens
    with pytest.raises(ValueError, match="vocabulary_size"):
        learn_vocabulary(CORPUS, 110)  # no room for the characters
    with pytest.raises(TypeError, match="text_dataset"):
        learn_vocabulary(tf.data.Dataset.from_tensor_slices([1, 2, 3]), 200)
    with pytest.raises(TypeError, match="text_dataset"):
        learn_vocabulary("just one string", 200)


def test_cli_writes_a_vocabulary_the_tokenizer_loads(tmp_path):
    corpus = tmp_path / "corpus.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as f:
        f.write("\n".join(CORPUS) + "\n")
    output = tmp_path / "vocab.txt"
    assert (
        learn_main(
            [
                "--input",
                str(corpus),
                "--size",
                "200",
                "--output",
                str(output),
                "--num-sentinels",
                "3",
            ]
        )
        == 0
    )
    tok = WordpieceTokenizer(str(output))
    assert tok.vocabulary_size() <= 200 and tok.sentinel_token_ids == (5, 6, 7)
    assert tok.get_vocabulary() == _learn(reserved_tokens=default_reserved_tokens(3))


def test_cli_as_a_module(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    output = tmp_path / "vocab.txt"
    cli = [sys.executable, "-m", "tfmoe.tokenize.learn"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    arguments = [
        "--input",
        str(corpus),
        "--size",
        "150",
        "--output",
        str(output),
        "--num-sentinels",
        "0",
    ]
    result = subprocess.run(cli + arguments, capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "wrote" in result.stdout, result.stderr[-2000:]
    assert len(output.read_text(encoding="utf-8").splitlines()) <= 150
    arguments = ["--input", str(tmp_path / "nope.txt"), "--size", "9", "--output", "x"]
    missing = subprocess.run(cli + arguments, capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_learned_on_the_jargon_file():
    with gzip.open(corpus.JARGON_FILE, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[:1500]
    vocab = learn_vocabulary(lines, 1000)
    tok = WordpieceTokenizer(vocab)
    ids = tok(tf.constant(lines)).flat_values.numpy()
    assert len(vocab) <= 1000
    assert np.mean(ids == tok.unknown_token_id) < 0.001
    # Fewer pieces per word than characters: it learned more than the alphabet.
    assert ids.size < 0.5 * sum(len(line.replace(" ", "")) for line in lines)
