"""The bundled default corpus: file locations, documents and stable splits.

`default_corpus/` ships inside the package (see its `NOTICE`):

- `jargon.txt.gz`: the Jargon File 4.4.7 (public domain), plain text. Its
  documents are the lexicon entries (heading paragraph plus body) and the
  paragraphs of the front and back matter; 95% train / 5% validation.
- `wordnet_glosses_subset.tsv.gz`: a per-class capped subset of the WordNet 3.0
  glosses (columns `synset`, `lexname`, `lemmas`, `gloss`), under the WordNet
  licence in `wordnet_LICENSE.txt`; see `tfmoe.data.wordnet`. A full glosses
  file, when you have one, is used instead if given as a path or named by the
  `TFMOE_WORDNET_GLOSSES` environment variable (`wordnet_glosses_file`).

Splits are assigned by a stable hash of a key (md5), so they are the same on
every machine and Python version, and a subset of a file keeps the split of
each of its rows.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
from typing import Iterator, Mapping

from tfmoe.data import files

DEFAULT_CORPUS_DIR = pathlib.Path(__file__).resolve().with_name("default_corpus")
JARGON_FILE = DEFAULT_CORPUS_DIR / "jargon.txt.gz"
WORDNET_SUBSET_FILE = DEFAULT_CORPUS_DIR / "wordnet_glosses_subset.tsv.gz"
WORDNET_LICENSE_FILE = DEFAULT_CORPUS_DIR / "wordnet_LICENSE.txt"

# The full WordNet glosses file (same columns as the bundled subset, 117,659 synsets) is not
# shipped; point this environment variable at it to use it instead of the subset.
WORDNET_GLOSSES_ENV = "TFMOE_WORDNET_GLOSSES"

JARGON_SPLITS = {"train": 0.95, "validation": 0.05}
_JARGON_HEADING = re.compile(r"^:[^:\s][^:]*:")  # ":term: /pronunciation/, n."
_JARGON_PART = re.compile(r"^Part [IVX]+\. ")  # ends the lexicon entries


def wordnet_glosses_file(path: str | os.PathLike | None = None) -> pathlib.Path:
    """The WordNet glosses TSV to read: `path`, else `$TFMOE_WORDNET_GLOSSES`, else the subset.

    With neither `path` nor the environment variable set, this is the bundled subset
    (`WORDNET_SUBSET_FILE`), so the task works offline with nothing configured.

    Raises:
        FileNotFoundError: `path`, or the file the environment variable names, does not exist
            (a typo should not fall back to the subset unnoticed).
    """
    if path is not None:
        chosen, origin = pathlib.Path(path), "path"
    elif os.environ.get(WORDNET_GLOSSES_ENV):
        chosen, origin = pathlib.Path(os.environ[WORDNET_GLOSSES_ENV]), f"${WORDNET_GLOSSES_ENV}"
    else:
        return WORDNET_SUBSET_FILE
    if not chosen.is_file():
        raise FileNotFoundError(
            f"WordNet glosses file {str(chosen)!r} (from {origin}) does not exist"
        )
    return chosen


def stable_split(key: str, fractions: Mapping[str, float]) -> str:
    """Assigns `key` to one split of `fractions` (`{name: fraction}`, summing to 1).

    The choice depends only on `key` (md5 of its UTF-8 bytes), in the order of
    `fractions`' keys.
    """
    digest = hashlib.md5(key.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0**64
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return name  # rounding: the last split takes the rest


def check_split(split: str | None, fractions: Mapping[str, float]) -> None:
    """Raises `ValueError` unless `split` is None or one of `fractions`' names."""
    if split is not None and split not in fractions:
        raise ValueError(f"split must be one of {sorted(fractions)} or None, got {split!r}")


def jargon_documents(
    split: str | None = None, path: str | os.PathLike = JARGON_FILE
) -> Iterator[str]:
    """Yields the documents of the Jargon File, in file order.

    A document is a lexicon entry (its `:term: ...` heading paragraph and the
    paragraphs up to the next heading, joined by newlines) or, outside the
    lexicon, one paragraph. Paragraphs without any letter (table borders) are
    skipped.

    Args:
        split: "train", "validation" or None (all documents). Documents are
            assigned by `stable_split` on their text, so repeated texts (table
            of contents lines) fall in one split.
        path: the (gzip) text file; defaults to the bundled copy.
    """
    check_split(split, JARGON_SPLITS)
    for document in _group_entries(
        p for p in files.iter_paragraphs(path) if re.search(r"[^\W\d_]", p)
    ):
        if split is None or stable_split(f"jargon:{document}", JARGON_SPLITS) == split:
            yield document


def _group_entries(paragraphs: Iterator[str]) -> Iterator[str]:
    entry: list[str] = []
    for paragraph in paragraphs:
        heading = _JARGON_HEADING.match(paragraph)
        if heading or _JARGON_PART.match(paragraph):
            if entry:
                yield "\n".join(entry)
            entry = []
        if heading or entry:
            entry.append(paragraph)
        else:
            yield paragraph
    if entry:
        yield "\n".join(entry)
