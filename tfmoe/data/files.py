"""Reading local text and TSV files (plain or gzip) in Python.

Used by the bundled corpus, the local-file sources and the TFDS builder, so
every reader raises the same `FileNotFoundError` naming the missing path.
"""

from __future__ import annotations

import csv
import gzip
import os
import pathlib
import re
from typing import IO, Iterator

_WHITESPACE = re.compile(r"\s+")


def require_file(path: str | os.PathLike) -> pathlib.Path:
    """Returns `path` as a `Path`; raises `FileNotFoundError` naming it if it is not a file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: '{path}'")
    return path


def is_gzip(path: str | os.PathLike) -> bool:
    """True when the file name ends in `.gz` (read with gzip)."""
    return str(path).endswith(".gz")


def open_text(path: str | os.PathLike) -> IO[str]:
    """Opens a UTF-8 text file for reading, decompressing `*.gz` files."""
    path = require_file(path)
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "rt", encoding="utf-8", newline="")


def iter_paragraphs(path: str | os.PathLike) -> Iterator[str]:
    """Yields the paragraphs of a text file (blocks separated by blank lines).

    The lines of a paragraph are joined by single spaces and runs of whitespace
    are collapsed.
    """
    lines: list[str] = []
    with open_text(path) as f:
        for line in f:
            if line.strip():
                lines.append(line)
            elif lines:
                yield _WHITESPACE.sub(" ", " ".join(lines)).strip()
                lines = []
    if lines:
        yield _WHITESPACE.sub(" ", " ".join(lines)).strip()


def tsv_header(path: str | os.PathLike) -> list[str]:
    """Returns the column names (first line) of a TSV file."""
    with open_text(path) as f:
        return f.readline().rstrip("\r\n").split("\t")


def iter_tsv_rows(path: str | os.PathLike) -> Iterator[dict[str, str]]:
    """Yields the rows of a TSV file with a header line as `{column: value}` dicts.

    Fields are split on tabs only (no quoting), so glosses may contain quotes.
    """
    with open_text(path) as f:
        yield from csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)


def find_column(path: str | os.PathLike, column: str | None, candidates: tuple[str, ...]) -> str:
    """Checks `column` is in the TSV header, or picks the first of `candidates` there.

    Raises:
        ValueError: naming the available columns when none matches.
    """
    header = tsv_header(path)
    wanted = (column,) if column is not None else candidates
    for name in wanted:
        if name in header:
            return name
    raise ValueError(
        f"TSV file '{path}' has no column {' or '.join(repr(w) for w in wanted)}; "
        f"its columns are {header}. Pass text_key=<column>."
    )
