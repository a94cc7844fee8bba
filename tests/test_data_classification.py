"""Classification pipeline and the WordNet supersense task."""

import gzip

import numpy as np
import pytest
import tensorflow as tf
from test_data_utils import plain_tokenizer, toy_tokenizer

from tfmoe.data import (
    SUPERSENSES,
    WORDNET_SUBSET_FILE,
    classification_dataset,
    corpus,
    wordnet,
    wordnet_supersense_splits,
)

TEXTS = ["the hacker", "jargon file of the hacker and the program is in it as with on that", "a"]


def _examples(texts=TEXTS, labels=(4, 7, 1)):
    return tf.data.Dataset.from_tensor_slices((tf.constant(texts), tf.constant(labels, tf.int64)))


def test_cls_tokens_sep_padding_and_keys():
    tok = toy_tokenizer()
    ds = classification_dataset(_examples(), tok, sequence_length=6, batch_size=3, shuffle_buffer_size=0,
                                token_ids_key="encoder_token_ids", padding_mask_key="encoder_padding_mask")  # fmt: skip
    features, labels = ds.element_spec
    assert set(features) == {"encoder_token_ids", "encoder_padding_mask"}
    assert (
        features["encoder_token_ids"].shape == (3, 6)
        and labels.shape == (3,)
        and labels.dtype == tf.int32
    )
    features, labels = next(iter(ds))
    assert labels.numpy().tolist() == [4, 7, 1]
    for i, row in enumerate(tok(tf.constant(TEXTS)).to_list()):
        expected = [tok.cls_token_id] + row[:4] + [tok.sep_token_id]  # truncated, [SEP] kept
        ids = features["encoder_token_ids"][i].numpy().tolist()
        assert ids[: len(expected)] == expected and ids[len(expected) :] == [0] * (
            6 - len(expected)
        )
        assert features["encoder_padding_mask"][i].numpy().sum() == len(expected)


def test_plain_callable_without_special_tokens():
    tok = toy_tokenizer()
    ds = classification_dataset(_examples(), plain_tokenizer(), sequence_length=5, batch_size=2,
                                shuffle_buffer_size=0)  # fmt: skip
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 1  # 3 examples, batch 2, remainder dropped
    features, _ = batches[0]
    assert features["token_ids"][0].tolist()[:2] == tok(tf.constant(TEXTS[:1])).to_list()[0]


@pytest.mark.parametrize("overrides, message", [(dict(sequence_length=0), "sequence_length"),
                                                (dict(batch_size=-1), "batch_size"),
                                                (dict(sequence_length=2), "sequence_length")])  # fmt: skip
def test_bad_arguments(overrides, message):
    options = dict(sequence_length=8, batch_size=2)
    options.update(overrides)
    with pytest.raises(ValueError, match=message):
        classification_dataset(_examples(), toy_tokenizer(), **options)


def test_supersense_labels():
    assert len(SUPERSENSES) == 45 and len(set(SUPERSENSES)) == 45
    assert (
        SUPERSENSES[0] == "adj.all"
        and SUPERSENSES[3] == "noun.Tops"
        and SUPERSENSES[44] == "adj.ppl"
    )


def test_bundled_wordnet_splits():
    train, validation, test, names = wordnet_supersense_splits(WORDNET_SUBSET_FILE)
    assert names == list(SUPERSENSES)
    assert train.element_spec == (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32))
    sizes = [int(ds.cardinality()) for ds in (train, validation, test)]
    total = sum(sizes)
    assert total == 23293
    assert abs(sizes[0] / total - 0.8) < 0.02 and abs(sizes[1] / total - 0.1) < 0.02
    _, labels = next(iter(train.batch(total)))
    assert set(labels.numpy().tolist()) == set(range(45))  # every class is in the training split
    text, label = next(iter(train))
    assert isinstance(text.numpy(), bytes) and 0 <= int(label) < 45


def test_wordnet_split_is_stable_and_disjoint(tmp_path):
    path = tmp_path / "glosses.tsv"
    rows = [
        f'{i:08d}n\tnoun.animal\tcat;true_cat\ta small "domesticated" feline {i}'
        for i in range(300)
    ]
    path.write_text("synset\tlexname\tlemmas\tgloss\n" + "\n".join(rows) + "\n")
    splits = {
        name: [s for s, _, _ in wordnet.wordnet_examples(name, path)]
        for name in wordnet.WORDNET_SPLITS
    }
    assert sum(len(v) for v in splits.values()) == 300
    assert len(set().union(*splits.values())) == 300
    for name, synsets in splits.items():
        assert all(
            corpus.stable_split(f"wordnet:{s}", wordnet.WORDNET_SPLITS) == name for s in synsets
        )
    # A subset keeps the split of each synset.
    subset = tmp_path / "subset.tsv"
    subset.write_text("synset\tlexname\tlemmas\tgloss\n" + "\n".join(rows[::3]) + "\n")
    expected = [s for s in splits["test"] if int(s[:-1]) % 3 == 0]
    assert [s for s, _, _ in wordnet.wordnet_examples("test", subset)] == expected
    train, _, _, _ = wordnet_supersense_splits(path, include_lemmas=True)
    text, label = next(iter(train))
    assert text.numpy().decode().startswith('cat, true cat: a small "domesticated" feline')
    assert int(label) == SUPERSENSES.index("noun.animal")


def test_wordnet_bad_rows(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("synset\tlexname\tlemmas\tgloss\n00000001n\tnoun.unicorn\tx\ty\n")
    with pytest.raises(ValueError, match="noun.unicorn"):
        wordnet_supersense_splits(path)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        wordnet_supersense_splits(tmp_path / "missing.tsv")
    with pytest.raises(ValueError, match="split"):
        list(wordnet.wordnet_examples("dev", path))


def test_glosses_file_is_the_argument_else_the_environment_else_the_subset(tmp_path, monkeypatch):
    """An explicit path wins over `$TFMOE_WORDNET_GLOSSES`, which wins over the bundled subset;
    a named file that does not exist is an error, not a silent fall-back."""
    full = tmp_path / "wordnet_glosses.tsv.gz"
    with gzip.open(WORDNET_SUBSET_FILE, "rb") as source, gzip.open(full, "wb") as target:
        target.write(source.read())
    other = tmp_path / "other.tsv"
    other.write_text("synset\tlexname\tlemmas\tgloss\n00000001n\tnoun.animal\tcat\ta cat\n")
    monkeypatch.delenv(corpus.WORDNET_GLOSSES_ENV, raising=False)
    assert corpus.wordnet_glosses_file() == WORDNET_SUBSET_FILE
    monkeypatch.setenv(corpus.WORDNET_GLOSSES_ENV, str(full))
    assert corpus.wordnet_glosses_file() == full
    assert corpus.wordnet_glosses_file(other) == other
    assert [text for _, text, _ in wordnet.wordnet_examples(None, other)] == ["a cat"]
    monkeypatch.setenv(corpus.WORDNET_GLOSSES_ENV, str(tmp_path / "nowhere.tsv.gz"))
    with pytest.raises(FileNotFoundError, match="TFMOE_WORDNET_GLOSSES"):
        corpus.wordnet_glosses_file()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        wordnet_supersense_splits()


def test_bundled_subset_is_reproducible(tmp_path):
    """The selection is a fixed point: drawn again from the bundled subset, it gives identical bytes
    (so the committed file is exactly what `make_bundled_subset` writes)."""
    out = tmp_path / "subset.tsv.gz"
    assert wordnet.make_bundled_subset(WORDNET_SUBSET_FILE, out) == 23293
    assert out.read_bytes() == WORDNET_SUBSET_FILE.read_bytes()
    smaller = tmp_path / "smaller.tsv.gz"
    rows = wordnet.make_bundled_subset(WORDNET_SUBSET_FILE, smaller, per_class=10)
    assert rows == 10 * len(
        {label for _, _, label in wordnet.wordnet_examples(None, WORDNET_SUBSET_FILE)}
    )


def test_wordnet_pipeline_end_to_end():
    train, _, _, _ = wordnet_supersense_splits(WORDNET_SUBSET_FILE)
    ds = classification_dataset(
        train.take(64), toy_tokenizer(), sequence_length=32, batch_size=16, seed=0
    )
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 4
    features, labels = batches[0]
    assert features["token_ids"].shape == (16, 32) and (features["token_ids"][:, 0] == 2).all()
    assert np.all((labels >= 0) & (labels < 45))


def test_finetune_script_reads_the_glosses_file_it_is_given(tmp_path, monkeypatch, load_script):
    """`experiments/finetune.py --wordnet_glosses=PATH` reads PATH, and only for the WordNet task."""
    path = tmp_path / "glosses.tsv"
    rows = [f"0000000{i}n\tnoun.animal\tcat\tanimal {i}" for i in range(10)]
    rows += [f"0000001{i}v\tverb.motion\trun\tmove {i}" for i in range(10)]
    path.write_text("synset\tlexname\tlemmas\tgloss\n" + "\n".join(rows) + "\n")
    monkeypatch.delenv(corpus.WORDNET_GLOSSES_ENV, raising=False)
    finetune = load_script("finetune")
    train, validation, test, names = finetune.load_task("wordnet", None, str(path))
    texts = [t.numpy().decode() for split in (train, validation, test) for t, _ in split]
    assert sorted(texts) == sorted(row.split("\t")[-1] for row in rows) and len(names) == 45
    with pytest.raises(ValueError, match="--wordnet_glosses is for --task=wordnet"):
        finetune.load_task(str(path), None, str(path))
