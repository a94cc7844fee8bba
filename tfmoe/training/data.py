"""Input pipelines of the experiment scripts: train / validation splits of a text source."""

from __future__ import annotations

import functools
import os

import tensorflow as tf

from tfmoe import data as tfmoe_data
from tfmoe.data import corpus, files

DEFAULT_VOCABULARY = os.path.join(os.fspath(corpus.DEFAULT_CORPUS_DIR), "vocab.txt")
# Local files: documents are assigned to a split by a fingerprint of their text.
LOCAL_FILE_SPLITS = {"train": 0.95, "validation": 0.05}
_SPLIT_BUCKETS = 10_000
# Documents are shuffled before packing, with a buffer that holds a whole corpus of the
# size of GCIDE (249k entries): dictionaries and lexicons are sorted, and a
# row-level shuffle alone would train on them letter by letter.
DOCUMENT_SHUFFLE_BUFFER = 300_000


def check_source(source: str) -> None:
    """Raises FileNotFoundError / ValueError early (one line) for a bad `--dataset`:
    a missing file, or one that is not UTF-8 text (e.g. binary; the whole file is read)."""
    if source == "default" or source.startswith("tfds:"):
        return
    if not os.path.isfile(source):
        raise FileNotFoundError(f"--dataset file not found: {source}")
    status = os.stat(source)
    problem = _non_utf8(os.path.abspath(source), status.st_size, status.st_mtime_ns)
    if problem:
        raise ValueError(f"--dataset file {source} is not UTF-8 text ({problem})")


@functools.lru_cache(maxsize=16)
def _non_utf8(path: str, size: int, mtime_ns: int) -> str | None:
    """`files.find_non_utf8(path)`, read once per version (size, time) of the file."""
    return files.find_non_utf8(path)


def text_splits(source: str, *, data_dir=None) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """`(train, validation)` datasets of scalar strings from `source` (see `tfmoe.data.text_dataset`).

    "default": the Jargon File's train / validation splits. TFDS: its "train" and
    "validation" splits (else "test"). Local files: each document goes to one split by a
    stable hash of its text (`LOCAL_FILE_SPLITS`: 95% train), in file order.
    """
    check_source(source)
    if source == "default":
        return tfmoe_data.text_dataset("default", split="train"), tfmoe_data.text_dataset(
            "default", split="validation"
        )
    if source.startswith("tfds:"):
        train = tfmoe_data.text_dataset(source, split="train", data_dir=data_dir)
        for split in ("validation", "test"):
            try:
                return train, tfmoe_data.text_dataset(source, split=split, data_dir=data_dir)
            except (ValueError, KeyError):
                continue
        raise ValueError(f"--dataset={source} has no validation or test split")
    texts = tfmoe_data.text_dataset(source, split="train")
    return stable_split_of(texts, "train"), stable_split_of(texts, "validation")


def is_validation_document(texts):
    """bool tensor, per document of `texts` (string tensor): held out for validation.

    A FarmHash fingerprint of the text (`tf.strings.to_hash_bucket_fast`), the same on every
    machine and run: `LOCAL_FILE_SPLITS["validation"]` of the documents, wherever they are in
    the file.
    """
    held_out = round(_SPLIT_BUCKETS * LOCAL_FILE_SPLITS["validation"])
    return tf.strings.to_hash_bucket_fast(texts, _SPLIT_BUCKETS) < held_out


def stable_split_of(texts: tf.data.Dataset, split: str) -> tf.data.Dataset:
    """The documents of `texts` that `is_validation_document` assigns to `split`, in order."""
    if split == "validation":
        return texts.filter(is_validation_document)
    return texts.filter(lambda text: tf.logical_not(is_validation_document(text)))


def pretraining_datasets(
    kind, tokenizer, source, *, sequence_length, batch_size, seed=0, data_dir=None
):
    """`(train, validation)` batches for a preset `kind` ("causal_lm" or "seq2seq").

    Train repeats forever (use `steps_per_epoch`); validation is one finite pass. The
    documents of both splits are shuffled (seeded) before packing, so that sorted
    sources (dictionaries) are seen in random order and the first validation batches
    are a sample of the whole split; validation keeps one fixed order. Both shuffles take
    `seed` and TF's global seed: set it first (`keras.utils.set_random_seed(seed)`, as
    `run_pretraining` does) to get the batches of a given run again.

    Raises:
        ValueError: the train split holds no sequence (training could not take a single
            step), or the validation split holds no batch.
    """
    train_texts, validation_texts = text_splits(source, data_dir=data_dir)
    if kind == "causal_lm":

        def make(texts, train, rows=batch_size, cache=True):
            return tfmoe_data.causal_lm_dataset(
                texts,
                tokenizer,
                sequence_length=sequence_length,
                batch_size=rows,
                cache=cache,
                shuffle_buffer_size=1_000 if train else 0,
                seed=seed,
                repeat=train,
            )
    else:

        def make(texts, train, rows=batch_size, cache=True):
            return tfmoe_data.span_corruption_dataset(
                texts,
                tokenizer,
                batch_size=rows,
                encoder_sequence_length=sequence_length,
                cache=cache,
                shuffle_buffer_size=1_000 if train else 0,
                seed=seed,
                repeat=train,
            )

    # Checked on the unshuffled documents, read only up to the first batch (no cache: a
    # partly read one is discarded with a warning). The training stream repeats its
    # sequences, so one sequence is enough to fill every batch.
    if not _holds_an_element(make(train_texts, False, rows=1, cache=False)):
        raise ValueError(
            f"the train split of --dataset={source} holds no batch: less than one "
            f"sequence of {sequence_length} tokens"
        )
    if not _holds_an_element(make(validation_texts, False, cache=False)):
        raise ValueError(
            f"the validation split of --dataset={source} holds less than one batch of "
            f"{batch_size}x{sequence_length} tokens"
        )
    train_texts = train_texts.shuffle(DOCUMENT_SHUFFLE_BUFFER, seed=seed)
    validation_texts = validation_texts.shuffle(
        DOCUMENT_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False
    )
    return make(train_texts, True), make(validation_texts, False)


def _holds_an_element(dataset: tf.data.Dataset) -> bool:
    return any(True for _ in dataset.take(1))
