"""Classifier SavedModel export: signatures, parity with Keras, any input, fresh-process load."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import test_export_helpers as h

import tfmoe

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tok = h.tokenizer()
    # One row per routing group: the documented recipe for per-request isolation
    # (pooled groups make a row's routing depend on its batch whenever an expert overflows).
    model = tfmoe.models.SwitchClassifier.from_preset(
        "switch_tiny_8",
        num_classes=3,
        vocabulary_size=tok.vocabulary_size(),
        group_size=h.SEQUENCE_LENGTH,
    )
    root = tmp_path_factory.mktemp("clf")
    path = tfmoe.export.export_saved_model(
        model, tok, root / "clf", label_names=LABELS, sequence_length=h.SEQUENCE_LENGTH, version=1
    )
    return model, tok, path, tf.saved_model.load(path)


def _reference(model, tok, texts):
    ids, mask, _ = h.pack(tok, texts, h.SEQUENCE_LENGTH, (tok.cls_token_id,), (tok.sep_token_id,))
    probabilities = tf.nn.softmax(model({"token_ids": ids, "padding_mask": mask}, training=False))
    return ids, mask, probabilities.numpy()


def test_layout_and_variables_tracked_once(exported):
    model, _, path, loaded = exported
    assert path.endswith("/clf/1")
    assert sorted(loaded.signatures) == ["embed", "serving_default"]
    assert len(loaded.variables) == len(model.variables)
    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            path,
            "--all",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("serving_default", "embed", "label_id", "probabilities", "embedding"):
        assert name in listing
    assert "DT_STRING" in listing and "shape: (-1)" in listing


def test_outputs_equal_keras(exported):
    model, tok, _, loaded = exported
    out = loaded.signatures["serving_default"](text=tf.constant(h.TEXTS))
    ids, mask, probabilities = _reference(model, tok, h.TEXTS)
    np.testing.assert_allclose(out["probabilities"].numpy(), probabilities, atol=1e-5)
    label_id = probabilities.argmax(-1)
    np.testing.assert_array_equal(out["label_id"].numpy(), label_id)
    assert [s.decode() for s in out["label"].numpy()] == [LABELS[i] for i in label_id]
    backbone = model.backbone
    hidden = backbone.encoder(backbone.token_embedding(ids), padding_mask=mask, training=False)
    weights = mask[:, :, None].astype("float32")
    expected = (hidden.numpy() * weights).sum(1) / np.maximum(weights.sum(1), 1)
    embedding = loaded.signatures["embed"](text=tf.constant(h.TEXTS))["embedding"]
    np.testing.assert_allclose(embedding.numpy(), expected, atol=1e-5)


def test_example_does_not_depend_on_batch(exported):
    _, _, _, loaded = exported
    serve = loaded.signatures["serving_default"]
    together = serve(text=tf.constant(h.TEXTS))["probabilities"].numpy()
    for i, text in enumerate(h.TEXTS):
        alone = serve(text=tf.constant([text]))["probabilities"].numpy()
        np.testing.assert_allclose(alone[0], together[i], atol=1e-6)


@pytest.mark.parametrize("signature", ["serving_default", "embed"])
def test_any_input_is_answered(exported, signature):
    model, tok, _, loaded = exported
    fn = loaded.signatures[signature]
    for texts in (h.EDGE_TEXTS, [h.EDGE_TEXTS[3]] * 4, [b"word"] * 1000, []):
        out = fn(text=tf.constant(texts, tf.string, shape=[len(texts)]))
        for value in out.values():
            assert value.shape[0] == len(texts)
            if value.dtype.is_floating:
                assert np.isfinite(value.numpy()).all()
    long_out = fn(text=tf.constant(h.EDGE_TEXTS[3:4]))  # truncated to the model length
    if signature == "serving_default":
        _, _, probabilities = _reference(model, tok, h.EDGE_TEXTS[3:4])
        np.testing.assert_allclose(long_out["probabilities"].numpy(), probabilities, atol=1e-5)


def test_fresh_process_loads_with_tensorflow_text_only(exported):
    _, _, path, loaded = exported
    results = h.load_in_fresh_process(path)
    expected = loaded.signatures["serving_default"](text=tf.constant(["hello world", ""]))
    np.testing.assert_allclose(
        results[path + ":serving_default"]["probabilities"],
        expected["probabilities"].numpy(),
        atol=1e-5,
    )


def test_bad_arguments_raise_value_errors(exported):
    model, tok, _, _ = exported
    with pytest.raises(ValueError, match="`model`"):
        tfmoe.export.export_saved_model(object(), tok, "unused")
    with pytest.raises(ValueError, match="`label_names`"):
        tfmoe.export.export_saved_model(model, tok, "unused", label_names=["a"])
    with pytest.raises(ValueError, match="`sequence_length`"):
        tfmoe.export.export_saved_model(model, tok, "unused", sequence_length=0)
    for option in ("max_batch_rows", "chunk_rows"):
        with pytest.raises(ValueError, match=f"`{option}`"):
            tfmoe.export.export_saved_model(model, tok, "unused", **{option: 0})
    with pytest.raises(ValueError, match="`jit_compile`"):
        tfmoe.export.export_saved_model(model, tok, "unused", jit_compile="yes")
    small = tfmoe.models.SwitchClassifier.from_preset(
        "switch_tiny_8", num_classes=3, vocabulary_size=100
    )
    with pytest.raises(ValueError, match="`tokenizer`"):
        tfmoe.export.export_saved_model(small, tok, "unused")
