"""Text sources: where the raw documents come from.

`text_dataset(source)` accepts:

- `"default"`: the bundled Jargon File (`tfmoe.data.corpus.jargon_documents`), offline.
- `"tfds:NAME"` or `"tfds:NAME/CONFIG"`: a TensorFlow Datasets dataset, e.g.
  `tfds:c4/en`, `tfds:wiki40b/en`, `tfds:imdb_reviews`, or the bundled
  `tfds:tfmoe_default_corpus` (offline). It is downloaded and prepared into
  `data_dir` if needed (needs internet except for the bundled one).
- a path to a `*.tsv` / `*.tsv.gz` file with a header line: one column.
- a path to any other (optionally `*.gz`) text file: one document per
  non-empty line, or per paragraph (blank-line separated) with `paragraphs=True`.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from tfmoe.data import (
    corpus,
    files,
    tfds_builder,  # noqa: F401  (registers tfmoe_default_corpus)
)

TFDS_PREFIX = "tfds:"
DEFAULT_SOURCE = "default"
_TEXT_COLUMNS = ("text", "gloss", "sentence", "document")


def text_dataset(
    source: str | os.PathLike = DEFAULT_SOURCE,
    *,
    split: str | None = "train",
    text_key: str | None = None,
    data_dir: str | os.PathLike | None = None,
    paragraphs: bool = False,
    download: bool = True,
) -> tf.data.Dataset:
    """A dataset of scalar `tf.string` documents from `source` (see the module docstring).

    Args:
        source: `"default"`, `"tfds:NAME[/CONFIG]"` or a local file path.
        split: the split (`"train"`, `"validation"`, ...; TFDS split syntax such
            as `"train[:1%]"` for TFDS; None = all for `"default"`). Local files
            only have `"train"` (or None).
        text_key: TFDS feature or TSV column holding the text; default `"text"`
            or the dataset's only text feature / the first of
            `text`, `gloss`, `sentence`, `document` among the TSV columns.
        data_dir: TFDS data directory.
        paragraphs: text files: split documents at blank lines instead of lines.
        download: TFDS: download and prepare the dataset if it is not in `data_dir`.

    Raises:
        FileNotFoundError: a local file that does not exist.
        ValueError: an unknown TFDS name or config, a missing text field, or a
            bad split for local files.
    """
    source = os.fspath(source)
    if source == DEFAULT_SOURCE:
        return tf.data.Dataset.from_generator(
            lambda: corpus.jargon_documents(split), output_signature=tf.TensorSpec([], tf.string)
        )
    if source.startswith(TFDS_PREFIX):
        return tfds_text_dataset(source[len(TFDS_PREFIX) :], split=split, text_key=text_key,
                                 data_dir=data_dir, download=download)  # fmt: skip
    if split not in ("train", None):
        raise ValueError(f"local file {source!r} has only the 'train' split, got split={split!r}")
    if source.endswith((".tsv", ".tsv.gz")):
        return tsv_dataset(source, text_key=text_key)
    return text_file_dataset(source, paragraphs=paragraphs)


def text_file_dataset(path: str | os.PathLike, *, paragraphs: bool = False) -> tf.data.Dataset:
    """Documents of a UTF-8 text file (gzip if `*.gz`): non-empty stripped lines, or paragraphs."""
    path = files.require_file(path)
    if paragraphs:
        return tf.data.Dataset.from_generator(
            lambda: files.iter_paragraphs(path), output_signature=tf.TensorSpec([], tf.string)
        )
    lines = tf.data.TextLineDataset(
        str(path), compression_type="GZIP" if files.is_gzip(path) else ""
    )
    return lines.map(tf.strings.strip).filter(lambda line: tf.strings.length(line) > 0)


def tsv_dataset(path: str | os.PathLike, *, text_key: str | None = None) -> tf.data.Dataset:
    """The `text_key` column of a tab-separated file with a header line (gzip if `*.gz`), no quoting."""
    path = files.require_file(path)
    column = files.find_column(path, text_key, _TEXT_COLUMNS)
    return tf.data.experimental.CsvDataset(
        str(path),
        record_defaults=[tf.constant("", tf.string)],
        compression_type="GZIP" if files.is_gzip(path) else None,
        header=True,
        field_delim="\t",
        use_quote_delim=False,
        select_cols=[files.tsv_header(path).index(column)],
    ).map(lambda text: text)  # 1-tuples -> scalars


def tfds_text_dataset(
    name: str,
    *,
    split: str | None = "train",
    text_key: str | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> tf.data.Dataset:
    """The text feature of TFDS dataset `name` (`"NAME"` or `"NAME/CONFIG"`, optionally `:VERSION`).

    Raises:
        ValueError: unknown dataset/config, or no (unique) text feature and no `text_key`.
    """
    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise ValueError(
            f"Unknown TFDS dataset {TFDS_PREFIX}{name} ({reason}); see tfds.list_builders() "
            "and https://www.tensorflow.org/datasets/catalog"
        ) from None
    key = _text_feature(builder, text_key)
    if download:
        builder.download_and_prepare()
    ds = builder.as_dataset(split=split or "all", shuffle_files=False)
    return ds.map(lambda example: example[key], num_parallel_calls=tf.data.AUTOTUNE)


def _text_feature(builder: tfds.core.DatasetBuilder, text_key: str | None) -> str:
    features = builder.info.features
    texts = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
    if text_key is None and "text" in texts:
        return "text"
    if text_key is None and len(texts) == 1:
        return texts[0]
    if text_key is not None and text_key in features:
        return text_key
    raise ValueError(
        f"TFDS dataset {builder.info.full_name}: "
        + (f"no feature {text_key!r}" if text_key else "cannot tell which feature is the text")
        + f"; its features are {sorted(features.keys())}. Pass text_key=<feature>."
    )
