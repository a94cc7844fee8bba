"""Causal (next-token) language modelling batches for the decoder-only model, inside the tf.data graph."""

from __future__ import annotations

import os

import tensorflow as tf

from tfmoe.data import pipeline


def causal_lm_dataset(
    texts: tf.data.Dataset,
    tokenizer: pipeline.Tokenizer,
    *,
    sequence_length: int,
    batch_size: int,
    packing: bool = True,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    shuffle_buffer_size: int | None = 10_000,
    seed: int | None = None,
    cache: bool | str | os.PathLike = True,
    repeat: bool = False,
    tokenize_batch_size: int = 256,
) -> tf.data.Dataset:
    """Raw text -> batches for `tfmoe.models.SwitchDecoderLM` (keras-hub `CausalLM` layout).

    Each document is tokenized in the graph and followed by `eos_token_id`.
    With `packing`, documents are concatenated and cut into windows of
    `sequence_length + 1` tokens (no padding at all; the tail is dropped);
    without it each document is one row, truncated or padded. A row
    `t_0 .. t_n` gives inputs `t_0 .. t_{n-1}` and labels `t_1 .. t_n`.

    Args:
        texts: dataset of scalar `tf.string` documents (see `tfmoe.data.text_dataset`).
        tokenizer: callable `tf.string [batch]` -> int ids `[batch, (tokens)]`.
        sequence_length: model sequence length.
        batch_size: rows per batch (the last partial batch is dropped).
        packing: pack documents into full rows (default) or one document per row.
        eos_token_id: appended to every document; default the tokenizer's
            `eos_token_id`/`end_token_id`/`sep_token_id`, none if it has none.
        pad_token_id: default `tokenizer.pad_token_id`, else 0.
        shuffle_buffer_size, seed, cache, repeat: see `pipeline.cache_shuffle_repeat`.
        tokenize_batch_size: documents per tokenizer call.

    Returns:
        A dataset of `(features, labels, sample_weight)`, all static shapes:
        features `{"token_ids": int32 [batch, sequence_length],
        "padding_mask": bool [batch, sequence_length]}`; labels: the next
        token, int32 `[batch, sequence_length]`; sample_weight: float32
        `[batch, sequence_length]`, 0 where the label is padding.

    Raises:
        ValueError: non-positive `sequence_length` or `batch_size`.
    """
    pipeline.check_positive(
        sequence_length=sequence_length,
        batch_size=batch_size,
        tokenize_batch_size=tokenize_batch_size,
    )
    eos = pipeline.token_id(
        eos_token_id, tokenizer, ("eos_token_id", "end_token_id", "sep_token_id")
    )
    pad = pipeline.token_id(pad_token_id, tokenizer, ("pad_token_id",))
    pad = 0 if pad is None else pad
    row_length = sequence_length + 1

    batches = pipeline.tokenized_batches(
        texts, tokenizer, append_id=eos, batch_size=tokenize_batch_size
    )
    if packing:
        rows = pipeline.pack(batches, row_length).map(
            lambda ids: (ids, tf.constant(row_length, tf.int32))
        )
    else:
        rows = (
            batches.map(
                lambda ids: pipeline.pad_rows(ids, row_length, pad),
                num_parallel_calls=pipeline.AUTOTUNE,
            )
            .unbatch()
            .filter(lambda ids, length: length >= 2)  # at least one (input, label) pair
        )
    rows = pipeline.cache_shuffle_repeat(
        rows, cache=cache, shuffle_buffer_size=shuffle_buffer_size, seed=seed, repeat=repeat
    )

    def to_features(ids, lengths):
        mask = tf.sequence_mask(lengths - 1, sequence_length)
        features = {"token_ids": tf.where(mask, ids[:, :-1], pad), "padding_mask": mask}
        return features, ids[:, 1:], tf.cast(mask, tf.float32)

    return pipeline.batch_map_prefetch(rows, batch_size, to_features)
