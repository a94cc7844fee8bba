"""`SequencePacker`: start/end tokens, truncation, padding, padding mask."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmoe.tokenize import SequencePacker, WordpieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "."]
PAD, CLS, SEP = 0, 2, 3
THE, CAT, SAT, ON, MAT, DOT = 5, 6, 7, 8, 9, 10


@pytest.fixture(scope="module")
def tokenizer():
    return WordpieceTokenizer(VOCAB)


def test_pack_ragged_batch(tokenizer):
    packer = SequencePacker.from_tokenizer(tokenizer, 6)
    out = packer(tokenizer(tf.constant(["the cat sat on the mat.", "cat", ""])))
    assert out["token_ids"].dtype == tf.int32 and out["token_ids"].shape == (3, 6)
    assert out["token_ids"].numpy().tolist() == [
        [CLS, THE, CAT, SAT, ON, SEP],  # truncated, the end token kept
        [CLS, CAT, SEP, PAD, PAD, PAD],
        [CLS, SEP, PAD, PAD, PAD, PAD],
    ]
    assert out["padding_mask"].dtype == tf.bool
    assert out["padding_mask"].numpy().astype(int).tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]


def test_dense_padded_input_gets_the_end_token_before_the_pads(tokenizer):
    dense = WordpieceTokenizer(VOCAB, sequence_length=5)(tf.constant(["the cat", "mat"]))
    out = SequencePacker.from_tokenizer(tokenizer, 6)(dense)
    assert out["token_ids"].numpy().tolist() == [[CLS, THE, CAT, SEP, PAD, PAD], [CLS, MAT, SEP, PAD, PAD, PAD]]


def test_single_sequence_and_no_start(tokenizer):
    packer = SequencePacker.from_tokenizer(tokenizer, 4, add_start=False)
    out = packer(tokenizer("the cat sat on"))
    assert out["token_ids"].numpy().tolist() == [THE, CAT, SAT, SEP]
    assert out["padding_mask"].numpy().all()
    bare = SequencePacker(3)(tf.ragged.constant([[5, 6, 7, 8], [9]]))
    assert bare["token_ids"].numpy().tolist() == [[5, 6, 7], [9, 0, 0]]


def test_in_tf_data(tokenizer):
    packer = SequencePacker.from_tokenizer(tokenizer, 5)
    dataset = tf.data.Dataset.from_tensor_slices(["the cat", "on the mat ."]).batch(2).map(tokenizer).map(packer)
    batch = next(iter(dataset))
    assert batch["token_ids"].numpy().tolist() == [[CLS, THE, CAT, SEP, PAD], [CLS, ON, THE, MAT, SEP]]


def test_config_round_trip():
    packer = SequencePacker(8, start_id=2, end_id=3, pad_id=0)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(packer))
    ids = tf.ragged.constant([[5, 6], [7]])
    np.testing.assert_array_equal(clone(ids)["token_ids"], packer(ids)["token_ids"])
    assert clone.get_config()["sequence_length"] == 8


def test_packer_errors(tokenizer):
    with pytest.raises(ValueError, match="sequence_length"):
        SequencePacker(2, start_id=2, end_id=3)
    with pytest.raises(ValueError, match="pad_id"):
        SequencePacker(4, pad_id=-1)
    with pytest.raises(TypeError, match="token_ids"):
        SequencePacker(4)(tf.constant([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        SequencePacker.from_tokenizer(WordpieceTokenizer(["[PAD]", "[UNK]", "a"]), 4)
