"""Reading local text and TSV files (plain or gzip) in Python.

Used by the bundled corpus, the local-file sources and the TFDS builder, so
every reader raises the same `FileNotFoundError` naming the missing path.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import pathlib
import re
from typing import IO, Iterator

_WHITESPACE = re.compile(r"\s+")
_BOM = codecs.BOM_UTF8
_CHUNK_BYTES = 1 << 20


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


def _open_binary(path: pathlib.Path) -> IO[bytes]:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def find_non_utf8(path: str | os.PathLike) -> str | None:
    """Where file `path` (gunzipped if `*.gz`) stops being UTF-8 text, or None if it is.

    Reads the whole file in chunks. Returns e.g. `"line 3: byte 0xe9 is not UTF-8"`,
    `"line 1: NUL byte (binary data)"` or `"not a readable gzip file"`.
    """
    path = require_file(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    try:
        with _open_binary(path) as f:
            while chunk := f.read(_CHUNK_BYTES):
                problem = _first_problem(chunk, decoder)
                if problem:
                    offset, description = problem
                    at = line + chunk[:offset].count(b"\n")
                    return f"line {at}: {description}"
                line += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return f"line {line}: the file ends inside a UTF-8 character"
    except (OSError, EOFError):  # gzip.BadGzipFile is an OSError
        return "not a readable gzip file" if is_gzip(path) else "not readable"
    return None


def _first_problem(chunk: bytes, decoder: codecs.IncrementalDecoder) -> tuple[int, str] | None:
    """`(offset in chunk, description)` of the first byte of `chunk` that is not UTF-8 or is
    NUL, or None; `decoder` carries a character split between chunks."""
    problems = []
    nul = chunk.find(b"\0")
    if nul >= 0:
        problems.append((nul, "NUL byte (binary data)"))
    try:
        decoder.decode(chunk)
    except UnicodeDecodeError as error:
        # `error.object` is the bytes decoded: an unfinished character, then `chunk`.
        carried = len(error.object) - len(chunk)
        problems.append(
            (max(error.start - carried, 0), f"byte 0x{error.object[error.start]:02x} is not UTF-8")
        )
    return min(problems) if problems else None


def read_labelled_tsv(
    path: str | os.PathLike, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[str]]:
    """`(texts, labels)` of a UTF-8 TSV file with a header line (gzip if `*.gz`).

    Fields are split on tabs only (no quoting); blank lines are skipped and a UTF-8 byte
    order mark is ignored. Rows are numbered as the lines of the file (the header is
    row 1), so an error points at the line to fix.

    Raises:
        FileNotFoundError: `path` is not a file.
        ValueError: naming the file, and the row and column where it applies: a
            header without both columns, a field that is not UTF-8, a row with a
            missing or an extra field, or an empty label.
    """
    path = require_file(path)
    texts: list[str] = []
    labels: list[str] = []
    header: list[str] | None = None
    with _open_binary(path) as f:
        for row, line in enumerate(f, start=1):
            line = line.rstrip(b"\r\n")
            if row == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if header is None:
                header = _decode_fields(path, row, line, None)
                columns = _column_indices(path, header, (text_column, label_column))
                continue
            if not line.strip():
                continue
            fields = _decode_fields(path, row, line, header)
            if len(fields) < len(header):
                raise ValueError(
                    f"{path}: row {row}, column {header[len(fields)]!r}: missing (the row has "
                    f"{len(fields)} tab-separated fields, the header {len(header)})"
                )
            if len(fields) > len(header):
                raise ValueError(
                    f"{path}: row {row} has {len(fields)} tab-separated fields, the header only "
                    f"{len(header)} (a tab inside a field?)"
                )
            text, label = (fields[i] for i in columns)
            if not label.strip():
                raise ValueError(f"{path}: row {row}, column {label_column!r} is empty")
            texts.append(text)
            labels.append(label)
    if header is None:
        raise ValueError(
            f"{path} is empty: it needs a header with {text_column!r} and {label_column!r} columns"
        )
    return texts, labels


def _decode_fields(
    path: pathlib.Path, row: int, line: bytes, header: list[str] | None
) -> list[str]:
    """The tab-separated fields of `line`, decoded; ValueError naming row and column if not UTF-8."""
    fields = []
    for index, field in enumerate(line.split(b"\t")):
        try:
            fields.append(field.decode("utf-8"))
        except UnicodeDecodeError as error:
            column = repr(header[index]) if header and index < len(header) else f"#{index + 1}"
            raise ValueError(
                f"{path}: row {row}, column {column}: byte 0x{field[error.start]:02x} is not UTF-8 "
                "(save the file as UTF-8)"
            ) from None
    return fields


def _column_indices(path: pathlib.Path, header: list[str], columns: tuple[str, ...]) -> list[int]:
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(
            f"{path}: the header (row 1) has no column {' or '.join(repr(c) for c in missing)}; "
            f"its columns are {header}"
        )
    return [header.index(c) for c in columns]
