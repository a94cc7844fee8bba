"""WordNet supersense classification: gloss -> one of 45 lexicographer classes.

Each WordNet 3.0 synset belongs to one lexicographer file ("supersense", e.g.
`noun.animal`, `verb.motion`); the task is to predict it from the synset's
gloss (optionally prefixed with its lemmas). Examples are split 80/10/10 into
train/validation/test by a stable hash of the synset id, so the split of a
synset never changes and the bundled subset agrees with the full file.

The data is a TSV with columns `synset`, `lexname`, `lemmas` (`;`-separated),
`gloss`. By default it is the subset shipped in the package (at most
`BUNDLED_PER_CLASS` synsets per class, chosen by the same hash); a full glosses
file (117,659 synsets) is used when passed as `path` or named by the
`TFMOE_WORDNET_GLOSSES` environment variable (`corpus.wordnet_glosses_file`). WordNet 3.0
Copyright 2006 by Princeton University; see `default_corpus/wordnet_LICENSE.txt`.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import os
import pathlib
from typing import Iterator

import tensorflow as tf

from tfmoe.data import corpus, files

# Label id = WordNet lexicographer file number (see WordNet's `lexnames` file).
SUPERSENSES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception",
    "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip
WORDNET_SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}
BUNDLED_PER_CLASS = 600
_LABEL_IDS = {name: i for i, name in enumerate(SUPERSENSES)}


def wordnet_examples(
    split: str | None = None,
    path: str | os.PathLike | None = None,
    *,
    include_lemmas: bool = False,
) -> Iterator[tuple[str, str, int]]:
    """Yields `(synset_id, text, label_id)` for the synsets of `split`, in file order.

    Args:
        split: "train", "validation", "test", or None for all rows.
        path: the glosses TSV; None: `$TFMOE_WORDNET_GLOSSES`, else the bundled subset
            (`corpus.wordnet_glosses_file`).
        include_lemmas: text is "lemma1, lemma2: gloss" instead of the gloss.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: unknown split, or a row with an unknown `lexname`.
    """
    corpus.check_split(split, WORDNET_SPLITS)
    path = corpus.wordnet_glosses_file(path)
    for row in files.iter_tsv_rows(path):
        synset = row["synset"]
        if split is not None and corpus.stable_split(f"wordnet:{synset}", WORDNET_SPLITS) != split:
            continue
        label = _LABEL_IDS.get(row["lexname"])
        if label is None:
            raise ValueError(f"{path}: synset {synset} has unknown lexname {row['lexname']!r}")
        text = row["gloss"]
        if include_lemmas:
            text = f"{row['lemmas'].replace(';', ', ').replace('_', ' ')}: {text}"
        yield synset, text, label


def wordnet_supersense_splits(
    path: str | os.PathLike | None = None, *, include_lemmas: bool = False
) -> tuple[tf.data.Dataset, tf.data.Dataset, tf.data.Dataset, list[str]]:
    """The supersense classification task as `tf.data` datasets.

    Args:
        path: the glosses TSV; None: `$TFMOE_WORDNET_GLOSSES`, else the bundled subset
            (`corpus.wordnet_glosses_file`).
        include_lemmas: prefix each gloss with its lemmas.

    Returns:
        `(train, validation, test, label_names)`. Each dataset yields
        `(text, label)` pairs: a scalar `tf.string` and a scalar `int32` in
        `[0, 45)`, in file order (shuffle downstream, e.g. with
        `tfmoe.data.classification_dataset`). `label_names[i]` is the
        supersense of label `i` (`SUPERSENSES`).
    """
    texts: dict[str, list[str]] = {name: [] for name in WORDNET_SPLITS}
    labels: dict[str, list[int]] = {name: [] for name in WORDNET_SPLITS}
    for synset, text, label in wordnet_examples(None, path, include_lemmas=include_lemmas):
        split = corpus.stable_split(f"wordnet:{synset}", WORDNET_SPLITS)
        texts[split].append(text)
        labels[split].append(label)
    datasets = [
        tf.data.Dataset.from_tensor_slices(
            (tf.constant(texts[name], tf.string, shape=[len(texts[name])]),
             tf.constant(labels[name], tf.int32, shape=[len(labels[name])]))
        )
        for name in WORDNET_SPLITS
    ]  # fmt: skip
    return (*datasets, list(SUPERSENSES))


def make_bundled_subset(
    source: str | os.PathLike,
    destination: str | os.PathLike = corpus.WORDNET_SUBSET_FILE,
    per_class: int = BUNDLED_PER_CLASS,
) -> int:
    """Writes the bundled subset: per class, the `per_class` synsets of smallest md5 hash.

    Rows keep the source's columns and file order; the output is gzip with a
    fixed mtime, so rerunning it gives identical bytes. Returns the row count.
    """
    header = files.tsv_header(source)
    rows = list(files.iter_tsv_rows(source))
    by_class = collections.defaultdict(list)
    for row in rows:
        by_class[row["lexname"]].append(row["synset"])
    keep = set()
    for synsets in by_class.values():
        keep.update(sorted(synsets, key=lambda s: hashlib.md5(s.encode()).hexdigest())[:per_class])
    kept = [row for row in rows if row["synset"] in keep]
    with (
        open(destination, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz,
    ):
        lines = ["\t".join(header)] + ["\t".join(row[c] for c in header) for row in kept]
        gz.write(("\n".join(lines) + "\n").encode("utf-8"))
    return len(kept)


if __name__ == "__main__":  # python -m tfmoe.data.wordnet SOURCE_TSV_GZ: regenerate the subset
    import sys

    print(
        make_bundled_subset(pathlib.Path(sys.argv[1])),
        "rows written to",
        corpus.WORDNET_SUBSET_FILE,
    )
