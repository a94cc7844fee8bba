"""Causal LM pipeline: packing, next-token labels, padding, static shapes."""

import numpy as np
import pytest
import tensorflow as tf
from test_data_utils import plain_tokenizer, sample_texts, texts_dataset, toy_tokenizer

from tfmoe.data import causal_lm_dataset


def _stream(tok, texts, eos):
    ids = tok(tf.constant(texts)).to_list()
    return sum((row + [eos] for row in ids), [])


def test_packed_rows_are_the_token_stream():
    tok = toy_tokenizer()
    texts = sample_texts(80)
    ds = causal_lm_dataset(
        texts_dataset(texts), tok, sequence_length=16, batch_size=3, shuffle_buffer_size=0
    )
    features, labels, weights = ds.element_spec
    assert features["token_ids"].shape == (3, 16) and features["token_ids"].dtype == tf.int32
    assert features["padding_mask"].shape == (3, 16) and features["padding_mask"].dtype == tf.bool
    assert labels.shape == (3, 16) and weights.shape == (3, 16)

    stream = _stream(tok, texts, tok.sep_token_id)  # eos defaults to [SEP]
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == len(stream) // 17 // 3
    rows = np.concatenate(
        [np.concatenate([f["token_ids"], y[:, -1:]], axis=1) for f, y, _ in batches]
    )
    np.testing.assert_array_equal(rows.reshape(-1), stream[: rows.size])
    for features, labels, weights in batches:
        np.testing.assert_array_equal(labels[:, :-1], features["token_ids"][:, 1:])
        assert features["padding_mask"].all() and (weights == 1).all()


def test_unpacked_rows_pad_and_mask():
    tok = toy_tokenizer()
    texts = [
        "the hacker",
        "a",
        "jargon file of the hacker and the program is in it as with on that",
    ]
    ds = causal_lm_dataset(texts_dataset(texts), plain_tokenizer(), sequence_length=8, batch_size=3,
                           packing=False, eos_token_id=3, pad_token_id=0, shuffle_buffer_size=0)  # fmt: skip
    features, labels, weights = next(iter(ds))
    ids = tok(tf.constant(texts)).to_list()
    for i, row in enumerate(ids):
        row = (row + [3])[:9]
        n = len(row) - 1
        assert features["token_ids"][i, :n].numpy().tolist() == row[:-1]
        assert labels[i, :n].numpy().tolist() == row[1:]
        assert features["padding_mask"][i].numpy().tolist() == [True] * n + [False] * (8 - n)
        assert weights[i].numpy().tolist() == [1.0] * n + [0.0] * (8 - n)
        assert (features["token_ids"][i, n:].numpy() == 0).all()


def test_shuffled_pipeline_is_reproducible():
    def run(seed):
        ds = causal_lm_dataset(texts_dataset(sample_texts(60)), toy_tokenizer(), sequence_length=8, batch_size=2,
                               seed=seed, shuffle_buffer_size=50)  # fmt: skip
        return np.stack([f["token_ids"] for f, _, _ in ds.as_numpy_iterator()])

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(sequence_length=0), "sequence_length"),
        (dict(sequence_length=-5), "sequence_length"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.0), "batch_size"),
    ],
)
def test_bad_arguments(overrides, message):
    options = dict(sequence_length=8, batch_size=2)
    options.update(overrides)
    with pytest.raises(ValueError, match=message):
        causal_lm_dataset(texts_dataset(["x"]), toy_tokenizer(), **options)


def test_texts_must_be_scalar_strings():
    with pytest.raises(ValueError, match="scalar tf.string"):
        causal_lm_dataset(
            tf.data.Dataset.range(3), toy_tokenizer(), sequence_length=8, batch_size=2
        )
