"""tfmoe.data pipelines fed by the real `tfmoe.tokenize.WordpieceTokenizer` (BERT uncased vocabulary)."""

import pytest
import tensorflow as tf
from conftest import BERT_VOCAB

from tfmoe import tokenize
from tfmoe.data import causal_lm_dataset, span_corruption_dataset, text_dataset


@pytest.fixture(scope="module")
def bert_tokenizer():
    return tokenize.WordpieceTokenizer(str(BERT_VOCAB))


def test_span_corruption_uses_tokenizer_special_ids(bert_tokenizer):
    ds = span_corruption_dataset(text_dataset("default", split="validation").take(30), bert_tokenizer,
                                 batch_size=2, encoder_sequence_length=32, seed=0)  # fmt: skip
    features, labels, _ = next(iter(ds))
    sentinels = set(bert_tokenizer.sentinel_token_ids)
    assert labels[0, 0].numpy() in sentinels  # targets start with sentinel 0
    assert labels[0, 0].numpy() == bert_tokenizer.sentinel_token_ids[0]
    assert features["decoder_token_ids"][0, 0].numpy() == bert_tokenizer.pad_token_id
    assert (
        int(
            tf.reduce_sum(
                tf.cast(features["encoder_token_ids"] == bert_tokenizer.sep_token_id, tf.int32)
            )
        )
        >= 2
    )


def test_causal_lm_with_keras_layer_tokenizer(bert_tokenizer):
    ds = causal_lm_dataset(text_dataset("default", split="validation").take(20), bert_tokenizer,
                           sequence_length=16, batch_size=4, shuffle_buffer_size=0)  # fmt: skip
    features, labels, _ = next(iter(ds))
    documents = next(iter(text_dataset("default", split="validation").batch(20)))
    ids = bert_tokenizer(documents)
    eos = tf.fill([20, 1], bert_tokenizer.sep_token_id)  # the default end-of-document id
    stream = tf.concat([ids, eos], axis=1).flat_values.numpy().tolist()
    assert features["token_ids"][0].numpy().tolist() == stream[:16]
    assert labels[0].numpy().tolist() == stream[1:17]
    assert features["token_ids"][1].numpy().tolist() == stream[17:33]
