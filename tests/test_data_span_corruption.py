"""T5 span corruption: noise mask invariants, sentinel placement, the tf.data pipeline."""

import numpy as np
import pytest
import tensorflow as tf
from test_data_utils import plain_tokenizer, sample_texts, texts_dataset, toy_tokenizer

from tfmoe.data import (
    noise_span_counts,
    random_spans_noise_mask,
    span_corrupt,
    span_corruption_dataset,
    span_corruption_lengths,
)

SENTINELS = list(range(1000, 1100))


def reconstruct(inputs, targets, sentinels):
    """Replaces each sentinel of `inputs` by the tokens after it in `targets` (T5 layout)."""
    sentinel_set = set(sentinels)
    spans, current = {}, None
    for token in targets:
        if token in sentinel_set:
            current = token
            spans[current] = []
        else:
            assert current is not None, "targets must start with a sentinel"
            spans[current].append(token)
    out = []
    for token in inputs:
        out.extend(spans[token] if token in sentinel_set else [token])
    return out


def spans_of(mask):
    """[(is_noise, length), ...] runs of a boolean vector."""
    runs = []
    for value in mask:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return runs


def test_lengths_match_t5():
    assert span_corruption_lengths(512) == (568, 114)  # T5's random_spans_helper values
    assert span_corruption_lengths(512, 0.15, 3.0) == (568, 114)
    for inputs_length in (16, 64, 100, 256):
        tokens_length, targets_length = span_corruption_lengths(inputs_length)
        noise, spans = noise_span_counts(tokens_length, 0.15, 3.0)
        assert tokens_length - noise + spans + 1 <= inputs_length
        assert targets_length == noise + spans + 1
        noise, spans = noise_span_counts(tokens_length + 1, 0.15, 3.0)
        assert tokens_length + 1 - noise + spans + 1 > inputs_length  # longest that fits


@pytest.mark.parametrize("length", [10, 37, 114, 568])
def test_noise_mask_invariants(length):
    num_noise, num_spans = noise_span_counts(length, 0.15, 3.0)
    for i in range(20):
        mask = random_spans_noise_mask(length, 0.15, 3.0, tf.constant([7, i])).numpy()
        assert mask.shape == (length,) and mask.dtype == bool
        assert mask.sum() == num_noise
        runs = spans_of(mask.tolist())
        # Non-noise and noise spans alternate, non-noise first and noise last.
        assert [r[0] for r in runs] == [False, True] * num_spans
    assert abs(num_noise - 0.15 * length) <= 0.5  # ~15% noise, T5 rounding
    if length >= 100:
        assert abs(num_spans - 0.15 * length / 3.0) <= 1


def test_noise_mask_deterministic_and_seed_dependent():
    a = random_spans_noise_mask(200, 0.15, 3.0, tf.constant([1, 2]))
    b = random_spans_noise_mask(200, 0.15, 3.0, tf.constant([1, 2]))
    c = random_spans_noise_mask(200, 0.15, 3.0, tf.constant([1, 3]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_noise_positions_cover_whole_row():
    seeds = tf.stack([tf.zeros([300], tf.int32), tf.range(300)], axis=1)
    masks = tf.function(tf.vectorized_map)(
        lambda seed: random_spans_noise_mask(60, 0.15, 3.0, seed), seeds
    ).numpy()
    per_position = masks.mean(axis=0)
    assert per_position[0] == 0.0  # always starts with a non-noise span
    assert per_position[-1] == 1.0  # always ends with a noise span
    assert (per_position[1:-1] > 0).all()


def test_span_corrupt_example():
    tokens = tf.constant([10, 11, 12, 13, 14, 15, 16, 17])
    mask = tf.constant([False, True, True, False, False, True, True, False])
    # T5 ends on a noise span; a trailing non-noise span still round-trips.
    inputs, targets = span_corrupt(tokens, mask, [100, 101, 102])
    assert inputs.numpy().tolist() == [10, 100, 13, 14, 101, 17]
    assert targets.numpy().tolist() == [100, 11, 12, 101, 15, 16, 102]


def test_span_corrupt_reconstructs_tokens():
    rng = np.random.default_rng(0)
    for i in range(10):
        tokens = rng.integers(5, 900, size=141).tolist()
        mask = random_spans_noise_mask(141, 0.15, 3.0, tf.constant([3, i]))
        inputs, targets = span_corrupt(tf.constant(tokens), mask, SENTINELS)
        inputs, targets = inputs.numpy().tolist(), targets.numpy().tolist()
        num_noise, num_spans = noise_span_counts(141, 0.15, 3.0)
        assert len(inputs) == 141 - num_noise + num_spans
        assert len(targets) == num_noise + num_spans
        assert [t for t in inputs if t in SENTINELS] == SENTINELS[:num_spans]
        assert [t for t in targets if t in SENTINELS] == SENTINELS[:num_spans]
        assert targets[0] == SENTINELS[0] and inputs[-1] == SENTINELS[num_spans - 1]
        assert reconstruct(inputs, targets, SENTINELS) == tokens


def _pipeline(tokenizer=None, texts=120, **overrides):
    options = dict(batch_size=4, encoder_sequence_length=64, seed=5, shuffle_buffer_size=0)
    options.update(overrides)
    return span_corruption_dataset(
        texts_dataset(sample_texts(texts)), tokenizer or toy_tokenizer(), **options
    )


def test_pipeline_shapes_and_reconstruction():
    tok = toy_tokenizer()
    ds = _pipeline()
    tokens_length, targets_length = span_corruption_lengths(64)
    features, labels, weights = ds.element_spec
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "encoder_token_ids": (4, 64),
        "encoder_padding_mask": (4, 64),
        "decoder_token_ids": (4, targets_length),
        "decoder_padding_mask": (4, targets_length),
    }
    assert labels.shape == (4, targets_length) and labels.dtype == tf.int32
    assert weights.shape == (4, targets_length) and weights.dtype == tf.float32

    # Unshuffled, the rows are consecutive windows of the concatenated token stream.
    stream = tok(tf.constant(sample_texts(120))).flat_values.numpy().tolist()
    rows = []
    for features, labels, weights in ds.as_numpy_iterator():
        for i in range(4):
            enc_len = features["encoder_padding_mask"][i].sum()
            dec_len = features["decoder_padding_mask"][i].sum()
            inputs = features["encoder_token_ids"][i][:enc_len].tolist()
            targets = labels[i][:dec_len].tolist()
            assert inputs[-1] == tok.sep_token_id and targets[-1] == tok.sep_token_id  # eos
            assert (features["encoder_token_ids"][i][enc_len:] == tok.pad_token_id).all()
            np.testing.assert_array_equal(weights[i], features["decoder_padding_mask"][i])
            # Decoder inputs are the targets shifted right behind the start (pad) id.
            assert features["decoder_token_ids"][i][0] == tok.pad_token_id
            np.testing.assert_array_equal(
                features["decoder_token_ids"][i][1:dec_len], labels[i][: dec_len - 1]
            )
            rows.append(reconstruct(inputs[:-1], targets[:-1], tok.sentinel_token_ids))
    assert len(rows) == 4 * (len(stream) // tokens_length // 4)
    assert all(len(r) == tokens_length for r in rows)
    assert sum(rows, []) == stream[: len(rows) * tokens_length]
    noise = [
        features["decoder_padding_mask"].sum(axis=1) for features, _, _ in ds.as_numpy_iterator()
    ]
    assert np.concatenate(noise).min() == targets_length  # every target row is full


def test_pipeline_deterministic_with_seed_and_fresh_noise_each_epoch():
    def first_epoch(ds):
        return [f["encoder_token_ids"] for f, _, _ in ds.as_numpy_iterator()]

    a, b = (_pipeline(texts=40, seed=11, shuffle_buffer_size=100) for _ in range(2))
    np.testing.assert_array_equal(first_epoch(a), first_epoch(b))
    np.testing.assert_raises(
        AssertionError, np.testing.assert_array_equal, first_epoch(a), first_epoch(a)
    )
    c = _pipeline(texts=40, seed=12, shuffle_buffer_size=100)
    assert not np.array_equal(first_epoch(b), first_epoch(c))
    # Without shuffling the rows repeat in order, but the noise is new each epoch.
    unshuffled = _pipeline(texts=40, seed=11)
    epoch1, epoch2 = first_epoch(unshuffled), first_epoch(unshuffled)
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(epoch1, first_epoch(_pipeline(texts=40, seed=11)))


def test_pipeline_explicit_ids_with_plain_callable():
    tok = toy_tokenizer()
    ds = _pipeline(plain_tokenizer(), sentinel_token_ids=tok.sentinel_token_ids, pad_token_id=0,
                   decoder_sequence_length=20)  # fmt: skip
    features, labels, weights = next(iter(ds))
    assert labels.shape == (4, 20)
    # No eos id on a plain callable: rows are one token longer, targets one shorter.
    tokens_length, targets_length = span_corruption_lengths(64, eos=False)
    assert int(features["decoder_padding_mask"][0].numpy().sum()) == targets_length
    assert (weights[:, targets_length:].numpy() == 0).all()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=-2), "batch_size"),
        (dict(encoder_sequence_length=0), "encoder_sequence_length"),
        (dict(decoder_sequence_length=-1), "decoder_sequence_length"),
        (dict(decoder_sequence_length=5), "decoder_sequence_length"),
        (dict(noise_density=1.5), "noise_density"),
        (dict(mean_noise_span_length=0.5), "mean_noise_span_length"),
        (dict(sentinel_token_ids=[1000, 1001]), "sentinel"),
    ],
)
def test_pipeline_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        _pipeline(**overrides)


def test_pipeline_needs_sentinels():
    with pytest.raises(ValueError, match="sentinel"):
        _pipeline(plain_tokenizer())
