"""Building blocks shared by the task pipelines (span corruption, causal LM, classification).

Conventions: a *tokenizer* is any callable mapping a `tf.string` tensor
`[batch]` to int token ids `[batch, (tokens)]` (a `tf.RaggedTensor`; a dense
result is taken as unpadded). Special token ids are explicit arguments that
default to the tokenizer's attributes when it has them (`pad_token_id`,
`sep_token_id`, ...), so the pipelines work with `tfmoe.tokenize` and with any
plain callable.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
Tokenizer = Callable[[tf.Tensor], Any]


def check_positive(**values: Any) -> None:
    """Raises `ValueError` naming the first argument that is not a positive int."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _attribute(tokenizer: Any, attributes: Sequence[str]) -> Any:
    for name in attributes:
        found = getattr(tokenizer, name, None)
        if callable(found):
            found = found()
        if found is not None:
            return found
    return None


def token_id(value: int | None, tokenizer: Any, attributes: Sequence[str]) -> int | None:
    """`value` if given, else the first of the tokenizer's `attributes` it has (called if a method), else None."""
    found = value if value is not None else _attribute(tokenizer, attributes)
    return None if found is None else int(found)


def token_id_list(
    values: Sequence[int] | None, tokenizer: Any, attributes: Sequence[str]
) -> list[int] | None:
    """Like `token_id` for a sequence of ids (e.g. sentinel ids)."""
    found = values if values is not None else _attribute(tokenizer, attributes)
    return None if found is None else [int(v) for v in np.asarray(found).reshape(-1)]


def tokenize(tokenizer: Tokenizer, texts: tf.Tensor) -> tf.RaggedTensor:
    """Applies `tokenizer` to `texts` `[batch]`; returns int32 ids `[batch, (tokens)]`."""
    ids = tokenizer(texts)
    if not isinstance(ids, tf.RaggedTensor):
        ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
    if ids.ragged_rank != 1:
        raise ValueError(
            f"tokenizer must return ids of shape [batch, (tokens)], got ragged rank {ids.ragged_rank}"
        )
    return tf.cast(ids, tf.int32)


def tokenized_batches(
    texts: tf.data.Dataset,
    tokenizer: Tokenizer,
    *,
    append_id: int | None = None,
    batch_size: int = 256,
) -> tf.data.Dataset:
    """Tokenizes a dataset of scalar strings in batches of `batch_size` documents.

    Returns a dataset of int32 `RaggedTensor`s `[<=batch_size, (tokens)]`, one
    row per document, with `append_id` (e.g. an end-of-text id) appended to
    every row when given.
    """
    if texts.element_spec != tf.TensorSpec([], tf.string):
        raise ValueError(f"texts must be a dataset of scalar tf.string, got {texts.element_spec}")

    suffix = () if append_id is None else (append_id,)
    return texts.batch(batch_size).map(
        lambda batch: add_ids(tokenize(tokenizer, batch), suffix=suffix),
        num_parallel_calls=AUTOTUNE,
    )


def add_ids(
    ids: tf.RaggedTensor, prefix: Sequence[int] = (), suffix: Sequence[int] = ()
) -> tf.RaggedTensor:
    """Prepends `prefix` and appends `suffix` (lists of ids) to every row of `ids` `[batch, (tokens)]`."""

    def block(values):
        return tf.tile(tf.constant([list(values)], tf.int32), [tf.cast(ids.nrows(), tf.int32), 1])

    parts = ([block(prefix)] if prefix else []) + [ids] + ([block(suffix)] if suffix else [])
    return tf.concat(parts, axis=1) if len(parts) > 1 else ids


def pack(batches: tf.data.Dataset, length: int) -> tf.data.Dataset:
    """Concatenates all tokens of `tokenized_batches` output and cuts them into rows.

    Returns a dataset of int32 `[length]` vectors: consecutive, non-overlapping
    windows of the token stream (documents run across row boundaries); the
    incomplete tail is dropped.
    """

    def _step(carry, ids):
        stream = tf.concat([carry, ids.flat_values], axis=0)
        rows = tf.shape(stream)[0] // length
        return stream[rows * length :], tf.reshape(stream[: rows * length], [rows, length])

    return batches.scan(tf.zeros([0], tf.int32), _step).unbatch()


def pad_rows(ids: tf.RaggedTensor, length: int, pad_id: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Truncates/pads ragged ids `[batch, (tokens)]` to `[batch, length]`.

    Returns `(ids [batch, length] int32, lengths [batch] int32)`, padding with
    `pad_id`; `lengths` counts the kept tokens of each row.
    """
    ids = ids[:, :length]
    return ids.to_tensor(default_value=pad_id, shape=[None, length]), tf.cast(
        ids.row_lengths(), tf.int32
    )


def cache_shuffle_repeat(
    ds: tf.data.Dataset,
    *,
    cache: bool | str | os.PathLike,
    shuffle_buffer_size: int | None,
    seed: int | None,
    repeat: bool,
) -> tf.data.Dataset:
    """Caches (True: in memory; a path: on disk), shuffles (reshuffled each epoch) and optionally repeats.

    `shuffle_buffer_size` None or 0 disables shuffling; `seed` makes the order reproducible.
    """
    if cache:
        ds = ds.cache() if cache is True else ds.cache(os.fspath(cache))
    if shuffle_buffer_size:
        ds = ds.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds


def batch_map_prefetch(
    ds: tf.data.Dataset, batch_size: int, fn: Callable, *, ragged: bool = False
) -> tf.data.Dataset:
    """Batches with `drop_remainder=True` (a static batch dimension, as TPUs need), maps `fn` over batches, prefetches.

    `ragged=True` batches variable-length elements into `RaggedTensor`s.
    """
    batch = ds.ragged_batch if ragged else ds.batch
    return (
        batch(batch_size, drop_remainder=True)
        .map(fn, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )
