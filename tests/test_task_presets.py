"""`tfmoe.models.save_task_preset` / `load_task_preset` / `init_backbone_from_preset`:
the keras-hub preset directories the scripts write and read."""

import json

import numpy as np
import pytest

from tfmoe.models import (
    SwitchCausalLM,
    SwitchSeq2SeqLM,
    SwitchTextClassifier,
    SwitchTransformer,
    init_backbone_from_preset,
    load_task_preset,
    save_task_preset,
)

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
] + "the quick brown fox jumps over lazy dog a cat sat on mat and is".split()
TINY = dict(
    vocabulary_size=len(VOCAB),
    hidden_dim=16,
    num_heads=2,
    intermediate_dim=32,
    num_layers=2,
    num_experts=4,
    dropout=0.0,
    eval_capacity_factor=64.0,
)


def _ids(batch=2, length=6):
    rng = np.random.default_rng(0)
    return {
        "token_ids": rng.integers(5, len(VOCAB), (batch, length)).astype("int32"),
        "padding_mask": np.array([[1] * length, [1] * (length - 2) + [0] * 2], bool),
    }


def test_causal_lm_preset_round_trip(tmp_path):
    lm = SwitchCausalLM.from_preset("switch_lm_tiny_8", **dict(TINY, num_layers=2))
    save_task_preset(lm, tmp_path / "lm", VOCAB, sequence_length=8)
    assert lm.preprocessor is None  # the saved task is a new one over the same backbone
    loaded = load_task_preset(str(tmp_path / "lm"))
    assert type(loaded) is SwitchCausalLM and loaded.preprocessor.sequence_length == 8
    assert loaded.preprocessor.tokenizer.get_vocabulary() == VOCAB
    np.testing.assert_allclose(loaded(_ids()), lm(_ids()), atol=1e-6)


def test_classifier_preset_keeps_label_names_and_export_kind(tmp_path):
    clf = SwitchTextClassifier.from_preset("switch_tiny_8", 3, **TINY)
    save_task_preset(
        clf, tmp_path / "clf", VOCAB, sequence_length=8, label_names=["neg", "neutral", "pos"]
    )
    assert clf.preprocessor is None and clf.label_names is None  # left as it is
    loaded = load_task_preset(str(tmp_path / "clf"))
    assert type(loaded) is SwitchTextClassifier
    assert loaded.label_names == ["neg", "neutral", "pos"]
    np.testing.assert_allclose(loaded(_ids()), clf(_ids()), atol=1e-6)
    with pytest.raises(ValueError, match="label_names"):
        save_task_preset(clf, tmp_path / "bad", VOCAB, 8, label_names=["a", "b"])


def test_classifier_starts_from_a_seq2seq_preset_by_name(tmp_path):
    seq2seq = SwitchTransformer.from_preset("switch_tiny_8", tie_embeddings=False, **TINY)
    save_task_preset(seq2seq, tmp_path / "s2s", VOCAB, sequence_length=8)
    config = json.loads((tmp_path / "s2s" / "config.json").read_text())
    assert config["registered_name"] == "tfmoe>SwitchSeq2SeqBackbone"
    assert type(load_task_preset(str(tmp_path / "s2s"))) is SwitchSeq2SeqLM

    clf = SwitchTextClassifier.from_preset("switch_tiny_8", 3, **TINY)
    assert init_backbone_from_preset(clf.backbone, str(tmp_path / "s2s")) == len(
        clf.backbone.weights
    )
    source = {v.path: np.asarray(v) for v in seq2seq.backbone.weights}
    for variable in clf.backbone.weights:
        np.testing.assert_array_equal(np.asarray(variable), source[variable.path])
    deeper = SwitchTextClassifier.from_preset("switch_tiny_8", 3, **dict(TINY, num_layers=3))
    with pytest.raises(ValueError, match=r"encoder/block_2/.*not in the preset"):
        init_backbone_from_preset(deeper.backbone, str(tmp_path / "s2s"))
