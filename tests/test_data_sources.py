"""Text sources (bundled default, local text/TSV files, TFDS) and the offline TFDS builder."""

import gzip

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import tfmoe.data  # noqa: F401  (registers tfmoe_default_corpus)
from tfmoe.data import (
    DEFAULT_CORPUS_DIR,
    JARGON_FILE,
    WORDNET_SUBSET_FILE,
    files,
    jargon_documents,
    text_dataset,
)


def _strings(ds):
    return [t.decode("utf-8") for t in ds.as_numpy_iterator()]


def test_bundled_files_and_notices():
    names = {p.name for p in DEFAULT_CORPUS_DIR.iterdir()}
    assert {
        "jargon.txt.gz",
        "wordnet_glosses_subset.tsv.gz",
        "wordnet_LICENSE.txt",
        "NOTICE",
    } <= names
    assert sum(p.stat().st_size for p in DEFAULT_CORPUS_DIR.iterdir()) < 3_000_000
    license_text = (DEFAULT_CORPUS_DIR / "wordnet_LICENSE.txt").read_text()
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in license_text
    assert "public domain" in (DEFAULT_CORPUS_DIR / "NOTICE").read_text()


def test_jargon_documents():
    documents = list(jargon_documents())
    assert 5000 < len(documents) < 6000
    train, validation = list(jargon_documents("train")), list(jargon_documents("validation"))
    assert (
        len(train) + len(validation) == len(documents)
        and 0.03 < len(validation) / len(documents) < 0.07
    )
    assert set(train).isdisjoint(validation)  # split by text: repeated texts stay together
    hack = next(d for d in documents if d.startswith(":hack:\n"))
    assert "1. n. Originally, a quick job" in hack  # an entry keeps its definition paragraphs
    assert max(len(d) for d in documents) < 20_000  # appendices are not glued to the last entry
    with pytest.raises(ValueError, match="split"):
        next(jargon_documents("test"))


def test_default_source():
    ds = text_dataset("default", split="validation")
    assert ds.element_spec == tf.TensorSpec([], tf.string)
    assert _strings(ds) == list(jargon_documents("validation"))


def test_text_file_lines_and_paragraphs(tmp_path):
    content = "first line\n  second  line \n\n\nthird\nparagraph here\n"
    plain, packed = tmp_path / "docs.txt", tmp_path / "docs.txt.gz"
    plain.write_text(content)
    packed.write_bytes(gzip.compress(content.encode()))
    for path in (plain, packed):
        assert _strings(text_dataset(path)) == [
            "first line",
            "second  line",
            "third",
            "paragraph here",
        ]
        assert _strings(text_dataset(str(path), paragraphs=True)) == [
            "first line second line",
            "third paragraph here",
        ]


def test_tsv_columns(tmp_path):
    path = tmp_path / "data.tsv.gz"
    path.write_bytes(
        gzip.compress('id\tgloss\tlabel\n1\ta "quoted" gloss\tx\n2\tanother, one\ty\n'.encode())
    )
    assert _strings(text_dataset(path)) == ['a "quoted" gloss', "another, one"]
    assert _strings(text_dataset(path, text_key="label")) == ["x", "y"]
    with pytest.raises(ValueError, match="'text'.*columns are"):
        text_dataset(path, text_key="text")
    assert int(text_dataset(WORDNET_SUBSET_FILE).reduce(0, lambda n, _: n + 1)) == 23293


def test_missing_files_name_the_path(tmp_path):
    for name in ("nothing.txt", "nothing.tsv", "nothing.txt.gz"):
        with pytest.raises(FileNotFoundError, match=name):
            text_dataset(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="para.txt"):
        text_dataset(tmp_path / "para.txt", paragraphs=True)


def test_local_files_have_one_split():
    with pytest.raises(ValueError, match="split"):
        text_dataset(JARGON_FILE, split="validation")


def test_unknown_tfds_names(tmp_path):
    with pytest.raises(ValueError, match="Unknown TFDS dataset tfds:no_such_dataset_xyz"):
        text_dataset("tfds:no_such_dataset_xyz", data_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown TFDS dataset tfds:tfmoe_default_corpus/nope"):
        text_dataset("tfds:tfmoe_default_corpus/nope", data_dir=tmp_path)


def test_tfds_text_feature_is_inferred_without_downloading(tmp_path):
    # imdb_reviews is registered in TFDS: its features are known offline.
    with pytest.raises(ValueError, match="no feature 'body'.*text"):
        text_dataset("tfds:imdb_reviews", text_key="body", data_dir=tmp_path, download=False)


def test_tfds_builder_offline(tmp_path):
    ds = tfds.load("tfmoe_default_corpus", split="validation", data_dir=str(tmp_path))
    texts = [x["text"].decode("utf-8") for x in ds.as_numpy_iterator()]
    assert sorted(texts) == sorted(jargon_documents("validation"))  # TFDS shuffles by key
    via_source = text_dataset(
        "tfds:tfmoe_default_corpus/text", split="validation", data_dir=tmp_path
    )
    assert _strings(via_source) == texts


@pytest.mark.slow  # prepares 23k examples (~8 s)
def test_tfds_builder_supersenses_offline(tmp_path):
    builder = tfds.builder("tfmoe_default_corpus/supersenses", data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.features["label"].num_classes == 45
    sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert set(sizes) == {"train", "validation", "test"} and sum(sizes.values()) == 23293
    text, label = next(iter(builder.as_dataset(split="test", as_supervised=True)))
    assert text.dtype == tf.string and 0 <= int(label) < 45


@pytest.mark.parametrize(
    "content, message",
    [
        (b"text\tlabel\nthe cat\tnoun\nruns\n", r"row 3, column 'label': missing"),
        (b"text\tlabel\nthe cat\t\nruns\tverb\n", r"row 2, column 'label' is empty"),
        (
            b"text\tlabel\nthe cat\tnoun\ncaf\xe9\tnoun\n",
            r"row 3, column 'text': byte 0xe9 is not UTF-8",
        ),
        (
            b"text\tlabel\nthe cat\tnoun\tx\n",
            r"row 2 has 3 tab-separated fields, the header only 2",
        ),
        (b"text\tclass\nthe cat\tnoun\n", r"header \(row 1\) has no column 'label'"),
    ],
)
def test_labelled_tsv_errors_name_file_row_and_column(tmp_path, content, message):
    path = tmp_path / "task.tsv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"task.tsv: .*{message}") as info:
        files.read_labelled_tsv(path)
    assert "\n" not in str(info.value)


def test_labelled_tsv_reads_gzip_and_skips_a_byte_order_mark(tmp_path):
    path = tmp_path / "task.tsv.gz"
    path.write_bytes(
        gzip.compress('\ufefftext\tlabel\nthe cat\tnoun\n\nruns "fast"\tverb\n'.encode())
    )
    assert files.read_labelled_tsv(path) == (["the cat", 'runs "fast"'], ["noun", "verb"])


def test_find_non_utf8(tmp_path):
    text, latin1, binary, packed = (
        tmp_path / name for name in ("a.txt", "b.txt", "c.bin", "d.txt.gz")
    )
    text.write_text("caf\u00e9\nna\u00efve\n", encoding="utf-8")
    latin1.write_bytes("ok\ncaf\u00e9\n".encode("latin-1"))
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00")
    packed.write_bytes(gzip.compress("one\ntwo\n".encode()))
    assert files.find_non_utf8(text) is None and files.find_non_utf8(packed) is None
    assert files.find_non_utf8(latin1) == "line 2: byte 0xe9 is not UTF-8"
    assert files.find_non_utf8(binary) == "line 1: NUL byte (binary data)"
    (tmp_path / "e.txt.gz").write_bytes(b"not gzip")
    assert files.find_non_utf8(tmp_path / "e.txt.gz") == "not a readable gzip file"
