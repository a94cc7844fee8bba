"""T5 span corruption for encoder-decoder pre-training, inside the tf.data graph.

Follows `t5.data.preprocessors.span_corruption` (Raffel et al., 2020): the token
stream is cut into rows of `tokens_length` tokens; in each row about
`noise_density` of the tokens, in spans of mean length
`mean_noise_span_length`, are noise. The inputs keep the non-noise tokens and
replace each noise span by a sentinel; the targets hold, after each sentinel,
the span it replaced:

    tokens:  a b c d e f g h
    inputs:  a <s0> d e <s1> h  [eos]
    targets: <s0> b c <s1> f g  [eos]

Sentinel `i` is `sentinel_token_ids[i]` (T5's `<extra_id_i>`). Noise spans
always alternate with non-noise spans, starting with a non-noise span, so the
inputs end with a sentinel (or its eos) and the targets start with one.
Randomness comes from stateless ops with a per-example seed, so results are
reproducible given the pipeline `seed`.
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from tfmoe.data import pipeline


def noise_span_counts(
    length: int, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
    """`(num_noise_tokens, num_noise_spans)` for a row of `length` tokens (T5's rounding and clamps)."""
    _check_noise(noise_density, mean_noise_span_length)
    length = max(length, 2)
    num_noise_tokens = min(max(int(round(length * noise_density)), 1), length - 1)
    num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
    num_noise_spans = min(max(num_noise_spans, 1), num_noise_tokens, length - num_noise_tokens)
    return num_noise_tokens, num_noise_spans


def span_corruption_lengths(
    inputs_length: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    *,
    eos: bool = True,
) -> tuple[int, int]:
    """T5's `random_spans_helper`: the longest row that fits `inputs_length` after corruption.

    Returns `(tokens_length, targets_length)`: rows of `tokens_length` raw
    tokens give inputs of at most `inputs_length` tokens and targets of exactly
    `targets_length` tokens (both counting one eos token when `eos`).
    For 512 inputs at 15% noise and mean span 3: `(568, 114)`.
    """
    pipeline.check_positive(inputs_length=inputs_length)
    extra = 1 if eos else 0

    def corrupted_lengths(tokens_length):
        noise, spans = noise_span_counts(tokens_length, noise_density, mean_noise_span_length)
        return tokens_length - noise + spans + extra, noise + spans + extra

    tokens_length = 1
    while corrupted_lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    if tokens_length < 2:
        raise ValueError(f"inputs_length={inputs_length} is too short for span corruption")
    return tokens_length, corrupted_lengths(tokens_length)[1]


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, seed: tf.Tensor
) -> tf.Tensor:
    """Boolean noise mask `[length]` (True = noise), T5's `random_spans_noise_mask`.

    `noise_span_counts(length, ...)` tokens are noise, split into that many
    spans; noise and non-noise span lengths are random partitions (each span
    at least one token), interleaved starting with non-noise.

    Args:
        length: the static row length (Python int).
        seed: int32/int64 `[2]`, the stateless random seed.
    """
    num_noise, num_spans = noise_span_counts(length, noise_density, mean_noise_span_length)
    noise_seed, nonnoise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    interleaved = tf.reshape(
        tf.stack(
            [
                _random_segmentation(length - num_noise, num_spans, nonnoise_seed),
                _random_segmentation(num_noise, num_spans, noise_seed),
            ],
            axis=1,
        ),
        [2 * num_spans],
    )
    span_starts = tf.cumsum(interleaved)[:-1]
    span_start_indicator = tf.math.unsorted_segment_sum(
        tf.ones_like(span_starts), span_starts, length
    )
    return tf.equal(tf.cumsum(span_start_indicator) % 2, 1)


def _random_segmentation(num_items: int, num_segments: int, seed: tf.Tensor) -> tf.Tensor:
    """Lengths `[num_segments]` (each >= 1, summing to `num_items`) of a uniformly random partition."""
    first_in_segment = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
    first_in_segment = tf.pad(
        tf.random.experimental.stateless_shuffle(first_in_segment, seed), [[1, 0]]
    )
    segment_id = tf.cumsum(first_in_segment)
    return tf.math.unsorted_segment_sum(tf.ones_like(segment_id), segment_id, num_segments)


def span_corrupt(
    tokens: tf.Tensor, noise_mask: tf.Tensor, sentinel_token_ids: Sequence[int] | tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits `tokens` `[length]` into `(inputs, targets)` (1-D, no eos) given `noise_mask` `[length]`.

    Inputs: each noise span replaced by the next sentinel. Targets: each
    non-noise span replaced by the next sentinel, so that span `i` of the
    targets follows the sentinel `i` that marks its place in the inputs.
    """
    sentinels = tf.convert_to_tensor(sentinel_token_ids, tf.int32)
    return _spans_to_sentinels(tokens, noise_mask, sentinels), _spans_to_sentinels(
        tokens, tf.logical_not(noise_mask), sentinels
    )


def _spans_to_sentinels(tokens: tf.Tensor, mask: tf.Tensor, sentinels: tf.Tensor) -> tf.Tensor:
    previous = tf.pad(mask[:-1], [[1, 0]])
    first = tf.logical_and(mask, tf.logical_not(previous))
    span_index = tf.maximum(tf.cumsum(tf.cast(first, tf.int32)) - 1, 0)
    replaced = tf.where(first, tf.gather(sentinels, span_index), tokens)
    return tf.boolean_mask(replaced, tf.logical_not(tf.logical_and(mask, previous)))


def span_corruption_dataset(
    texts: tf.data.Dataset,
    tokenizer: pipeline.Tokenizer,
    *,
    batch_size: int,
    encoder_sequence_length: int = 512,
    decoder_sequence_length: int | None = None,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    sentinel_token_ids: Sequence[int] | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    decoder_start_token_id: int | None = None,
    document_separator_id: int | None = None,
    shuffle_buffer_size: int | None = 10_000,
    seed: int | None = None,
    cache: bool | str | os.PathLike = True,
    repeat: bool = False,
    tokenize_batch_size: int = 256,
) -> tf.data.Dataset:
    """Raw text -> batches of T5 span-corrupted examples for `tfmoe.models.SwitchTransformer`.

    Documents are tokenized in the graph, concatenated (T5 puts no separator
    between them; `document_separator_id` adds one), cut into rows of
    `tokens_length` tokens (`span_corruption_lengths`), cached, shuffled and
    corrupted with fresh noise each epoch.

    Args:
        texts: dataset of scalar `tf.string` documents (see `tfmoe.data.text_dataset`).
        tokenizer: callable `tf.string [batch]` -> int ids `[batch, (tokens)]`.
        batch_size: examples per batch (the last partial batch is dropped).
        encoder_sequence_length: encoder length (T5: 512); the row length is the
            longest whose corrupted inputs fit it.
        decoder_sequence_length: decoder length; default: exactly the targets
            length (114 for 512). Must not be shorter than that.
        sentinel_token_ids: ids of sentinels 0, 1, ...; default
            `tokenizer.sentinel_token_ids`. Needs one per noise span of a row.
        eos_token_id: appended to inputs and targets; default the tokenizer's
            `eos_token_id`/`end_token_id`/`sep_token_id`, none if it has none.
        pad_token_id: default `tokenizer.pad_token_id`, else 0.
        decoder_start_token_id: first decoder input; default `pad_token_id` (T5).
        document_separator_id: id put after every document before packing; default none (T5).
        shuffle_buffer_size, seed, cache, repeat: see `pipeline.cache_shuffle_repeat`;
            `seed` also fixes the noise.
        tokenize_batch_size: documents per tokenizer call.

    Returns:
        A dataset of `(features, labels, sample_weight)`, all static shapes:
        features `{"encoder_token_ids": int32 [batch, encoder_sequence_length],
        "encoder_padding_mask": bool [batch, encoder_sequence_length],
        "decoder_token_ids": int32 [batch, decoder_sequence_length],
        "decoder_padding_mask": bool [batch, decoder_sequence_length]}`;
        labels: the targets, int32 `[batch, decoder_sequence_length]`
        (`decoder_token_ids` is them shifted right by one behind the start id);
        sample_weight: float32 `[batch, decoder_sequence_length]`, 0 on padding.

    Raises:
        ValueError: non-positive `batch_size`/`encoder_sequence_length`/
            `decoder_sequence_length`, bad noise parameters, too few sentinels.
    """
    pipeline.check_positive(
        batch_size=batch_size,
        encoder_sequence_length=encoder_sequence_length,
        tokenize_batch_size=tokenize_batch_size,
    )
    if decoder_sequence_length is not None:
        pipeline.check_positive(decoder_sequence_length=decoder_sequence_length)
    eos = pipeline.token_id(
        eos_token_id, tokenizer, ("eos_token_id", "end_token_id", "sep_token_id")
    )
    pad = pipeline.token_id(pad_token_id, tokenizer, ("pad_token_id",))
    pad = 0 if pad is None else pad
    start = pad if decoder_start_token_id is None else int(decoder_start_token_id)
    sentinels = pipeline.token_id_list(sentinel_token_ids, tokenizer, ("sentinel_token_ids",))

    tokens_length, targets_length = span_corruption_lengths(
        encoder_sequence_length, noise_density, mean_noise_span_length, eos=eos is not None
    )
    decoder_length = targets_length if decoder_sequence_length is None else decoder_sequence_length
    if decoder_length < targets_length:
        raise ValueError(
            f"decoder_sequence_length={decoder_length} is shorter than the targets "
            f"({targets_length} tokens for encoder_sequence_length={encoder_sequence_length})"
        )
    num_spans = noise_span_counts(tokens_length, noise_density, mean_noise_span_length)[1]
    if not sentinels or len(sentinels) < num_spans:
        raise ValueError(
            f"span corruption of {tokens_length}-token rows needs {num_spans} sentinel ids, got "
            f"{0 if not sentinels else len(sentinels)}: pass sentinel_token_ids"
        )

    def corrupt(seed_pair, tokens):
        noise = random_spans_noise_mask(
            tokens_length, noise_density, mean_noise_span_length, seed_pair
        )
        inputs, targets = span_corrupt(tokens, noise, sentinels)
        if eos is not None:
            inputs, targets = tf.concat([inputs, [eos]], 0), tf.concat([targets, [eos]], 0)
        return inputs, targets

    def to_features(inputs, targets):
        encoder_ids, encoder_lengths = pipeline.pad_rows(inputs, encoder_sequence_length, pad)
        labels, decoder_lengths = pipeline.pad_rows(targets, decoder_length, pad)
        decoder_mask = tf.sequence_mask(decoder_lengths, decoder_length)
        shifted = tf.pad(labels[:, :-1], [[0, 0], [1, 0]], constant_values=start)
        features = {
            "encoder_token_ids": encoder_ids,
            "encoder_padding_mask": tf.sequence_mask(encoder_lengths, encoder_sequence_length),
            "decoder_token_ids": tf.where(decoder_mask, shifted, pad),
            "decoder_padding_mask": decoder_mask,
        }
        return features, labels, tf.cast(decoder_mask, tf.float32)

    rows = pipeline.pack(
        pipeline.tokenized_batches(
            texts, tokenizer, append_id=document_separator_id, batch_size=tokenize_batch_size
        ),
        tokens_length,
    )
    rows = pipeline.cache_shuffle_repeat(
        rows, cache=cache, shuffle_buffer_size=shuffle_buffer_size, seed=seed, repeat=repeat
    )
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    examples = tf.data.Dataset.zip(seeds, rows).map(corrupt, num_parallel_calls=pipeline.AUTOTUNE)
    return pipeline.batch_map_prefetch(examples, batch_size, to_features, ragged=True)


def _check_noise(noise_density: float, mean_noise_span_length: float) -> None:
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density!r}")
    if not mean_noise_span_length >= 1.0:
        raise ValueError(f"mean_noise_span_length must be >= 1, got {mean_noise_span_length!r}")
