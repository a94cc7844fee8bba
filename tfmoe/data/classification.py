"""Text classification batches (`(text, label)` -> token ids + int label), inside the tf.data graph."""

from __future__ import annotations

import os

import tensorflow as tf

from tfmoe.data import pipeline


def classification_dataset(
    examples: tf.data.Dataset,
    tokenizer: pipeline.Tokenizer,
    *,
    sequence_length: int,
    batch_size: int,
    cls_token_id: int | None = None,
    sep_token_id: int | None = None,
    pad_token_id: int | None = None,
    token_ids_key: str = "token_ids",
    padding_mask_key: str = "padding_mask",
    shuffle_buffer_size: int | None = 10_000,
    seed: int | None = None,
    cache: bool | str | os.PathLike = True,
    repeat: bool = False,
    tokenize_batch_size: int = 256,
) -> tf.data.Dataset:
    """`(text, label)` pairs -> batches for a sequence classifier (e.g. `tfmoe.models.SwitchClassifier`).

    Each text becomes `[cls] tokens [sep]`, truncated to `sequence_length`
    (the `[sep]` is kept) and padded. For evaluation pass
    `shuffle_buffer_size=0`; note the last partial batch is dropped.

    Args:
        examples: dataset of `(text, label)`: scalar `tf.string` and scalar int
            (e.g. from `tfmoe.data.wordnet_supersense_splits`).
        tokenizer: callable `tf.string [batch]` -> int ids `[batch, (tokens)]`.
        sequence_length: token sequence length.
        batch_size: examples per batch.
        cls_token_id, sep_token_id: prepended/appended ids; default the
            tokenizer's `cls_token_id`/`start_token_id` and
            `sep_token_id`/`end_token_id`, left out if it has none.
        pad_token_id: default `tokenizer.pad_token_id`, else 0.
        token_ids_key, padding_mask_key: feature names (e.g.
            "encoder_token_ids"/"encoder_padding_mask" for an encoder model).
        shuffle_buffer_size, seed, cache, repeat: see `pipeline.cache_shuffle_repeat`.
        tokenize_batch_size: texts per tokenizer call.

    Returns:
        A dataset of `(features, labels)` with static shapes: features
        `{token_ids_key: int32 [batch, sequence_length], padding_mask_key:
        bool [batch, sequence_length]}`, labels int32 `[batch]`.

    Raises:
        ValueError: non-positive `sequence_length`/`batch_size`, or a
            `sequence_length` too short for the special tokens.
    """
    pipeline.check_positive(
        sequence_length=sequence_length,
        batch_size=batch_size,
        tokenize_batch_size=tokenize_batch_size,
    )
    cls = pipeline.token_id(cls_token_id, tokenizer, ("cls_token_id", "start_token_id"))
    sep = pipeline.token_id(sep_token_id, tokenizer, ("sep_token_id", "end_token_id"))
    pad = pipeline.token_id(pad_token_id, tokenizer, ("pad_token_id",))
    pad = 0 if pad is None else pad
    prefix = [] if cls is None else [cls]
    suffix = [] if sep is None else [sep]
    body_length = sequence_length - len(prefix) - len(suffix)
    if body_length <= 0:
        raise ValueError(
            f"sequence_length={sequence_length} leaves no room for tokens besides [cls]/[sep]"
        )

    def encode(texts, labels):
        ids = pipeline.add_ids(pipeline.tokenize(tokenizer, texts)[:, :body_length], prefix, suffix)
        token_ids, lengths = pipeline.pad_rows(ids, sequence_length, pad)
        return token_ids, lengths, tf.cast(labels, tf.int32)

    rows = (
        examples.batch(tokenize_batch_size)
        .map(encode, num_parallel_calls=pipeline.AUTOTUNE)
        .unbatch()
    )
    rows = pipeline.cache_shuffle_repeat(
        rows, cache=cache, shuffle_buffer_size=shuffle_buffer_size, seed=seed, repeat=repeat
    )

    def to_features(token_ids, lengths, labels):
        mask = tf.sequence_mask(lengths, sequence_length)
        return {token_ids_key: token_ids, padding_mask_key: mask}, labels

    return pipeline.batch_map_prefetch(rows, batch_size, to_features)
