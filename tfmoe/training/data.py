"""Input pipelines of the experiment scripts: train / validation splits of a text source.

All pipelines feed int32 padding masks: Keras 3.15's `fit` under `MirroredStrategy`
MEAN-reduces the first batch (`Trainer._maybe_symbolic_build`), which fails on bool
tensors.
"""

from __future__ import annotations

import os

import tensorflow as tf

from tfmoe import data as tfmoe_data
from tfmoe.data import corpus

DEFAULT_VOCABULARY = os.path.join(os.fspath(corpus.DEFAULT_CORPUS_DIR), "vocab.txt")
_VALIDATION_EVERY = 20  # local files: every 20th document is held out
# Documents are shuffled before packing, with a buffer that holds a whole corpus of the
# size of GCIDE (249k entries): dictionaries and lexicons are sorted, and a
# row-level shuffle alone would train on them letter by letter.
DOCUMENT_SHUFFLE_BUFFER = 300_000


def int_masks(features, *rest):
    """Casts the bool tensors of a features dict to int32 (see module docstring)."""
    features = {k: tf.cast(v, tf.int32) if v.dtype == tf.bool else v for k, v in features.items()}
    return (features, *rest)


def check_source(source: str) -> None:
    """Raises FileNotFoundError / ValueError early (one line) for a bad `--dataset`."""
    if source == "default" or source.startswith("tfds:"):
        return
    if not os.path.isfile(source):
        raise FileNotFoundError(f"--dataset file not found: {source}")


def text_splits(source: str, *, data_dir=None) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """`(train, validation)` datasets of scalar strings from `source` (see `tfmoe.data.text_dataset`).

    "default": the Jargon File's train / validation splits. TFDS: its "train" and
    "validation" splits (else "test"). Local files: every 20th document is validation.
    """
    check_source(source)
    if source == "default":
        return tfmoe_data.text_dataset("default", split="train"), tfmoe_data.text_dataset("default", split="validation")
    if source.startswith("tfds:"):
        train = tfmoe_data.text_dataset(source, split="train", data_dir=data_dir)
        for split in ("validation", "test"):
            try:
                return train, tfmoe_data.text_dataset(source, split=split, data_dir=data_dir)
            except (ValueError, KeyError):
                continue
        raise ValueError(f"--dataset={source} has no validation or test split")
    texts = tfmoe_data.text_dataset(source, split="train").enumerate()

    def split(held_out):
        def keep(index, text):
            return tf.equal(index % _VALIDATION_EVERY == 0, held_out)

        def text_only(index, text):
            return text

        return texts.filter(keep).map(text_only)

    return split(False), split(True)


def pretraining_datasets(kind, tokenizer, source, *, sequence_length, batch_size, seed=0, data_dir=None):
    """`(train, validation)` batches for a preset `kind` ("causal_lm" or "seq2seq").

    Train repeats forever (use `steps_per_epoch`); validation is one finite pass. The
    documents of both splits are shuffled (seeded) before packing, so that sorted
    sources (dictionaries) are seen in random order and the first validation batches
    are a sample of the whole split; validation keeps one fixed order.
    """
    train_texts, validation_texts = text_splits(source, data_dir=data_dir)
    train_texts = train_texts.shuffle(DOCUMENT_SHUFFLE_BUFFER, seed=seed)
    validation_texts = validation_texts.shuffle(DOCUMENT_SHUFFLE_BUFFER, seed=seed,
                                                reshuffle_each_iteration=False)
    if kind == "causal_lm":
        def make(texts, train):
            return tfmoe_data.causal_lm_dataset(
                texts, tokenizer, sequence_length=sequence_length, batch_size=batch_size,
                shuffle_buffer_size=1_000 if train else 0, seed=seed, repeat=train)
    else:
        def make(texts, train):
            return tfmoe_data.span_corruption_dataset(
                texts, tokenizer, batch_size=batch_size, encoder_sequence_length=sequence_length,
                shuffle_buffer_size=1_000 if train else 0, seed=seed, repeat=train)
    return make(train_texts, True).map(int_masks), make(validation_texts, False).map(int_masks)
