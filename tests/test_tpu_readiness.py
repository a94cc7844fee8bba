"""TPU readiness without a TPU: static shapes end to end, and every tiny preset's full
training step compiled by XLA with the TPU dispatch (einsum).

What these prove: the pipelines hand the model fully static shapes, and the training step
(forward, backward, optimizer update) lowers to HLO with no dynamic dimension, which is
what the TPU compiler needs. What they cannot prove: TPU-only lowering of individual ops
and speed (see docs/tpu.md).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmoe import data as tfmoe_data
from tfmoe.distribute import assert_static_shapes, dynamic_dimensions, dynamic_hlo_shapes
from tfmoe.models import SwitchClassifier, get_preset
from tfmoe.training import data as training_data
from tfmoe.training.pretraining import build_model, make_tokenizer

SEQ, BATCH = 32, 4
SMALL = dict(num_layers=2, hidden_dim=32, num_heads=2, key_value_dim=16, intermediate_dim=64)
TINY_PRESETS = ["switch_tiny_8", "dense_tiny", "glam_tiny_8", "switch_lm_tiny_8", "dense_lm_tiny"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(training_data.DEFAULT_VOCABULARY)


def _pretraining_batches(preset, tokenizer):
    kind = get_preset(preset)["kind"]
    train, _ = training_data.pretraining_datasets(
        kind, tokenizer, "default", sequence_length=SEQ, batch_size=BATCH, seed=0
    )
    return train


def _classification_batches(tokenizer):
    texts = tf.constant(
        [
            "a hacker is a person who enjoys exploring the details of systems",
            "the act of moving something",
            "a small furry animal",
            "to run quickly",
        ]
        * 4
    )
    labels = tf.constant([18, 4, 5, 38] * 4, tf.int32)
    examples = tf.data.Dataset.from_tensor_slices((texts, labels))
    return tfmoe_data.classification_dataset(
        examples,
        tokenizer,
        sequence_length=SEQ,
        batch_size=BATCH,
        shuffle_buffer_size=0,
        repeat=True,
    )


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )


def _assert_static_training(model, dataset):
    """The whole train step (forward, backward, update) lowers to fully static HLO, and runs."""

    @tf.function(jit_compile=True)
    def step(*data):  # (features, labels[, sample_weight])
        return model.train_step(data)

    dynamic = dynamic_hlo_shapes(step, *next(iter(dataset)))
    assert not dynamic, f"dynamic shapes in the compiled step: {dynamic[:3]}"
    history = model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_dynamic_hlo_shapes_are_detected():
    @tf.function(jit_compile=True)
    def positive_sum(x):
        return tf.reduce_sum(tf.boolean_mask(x, x > 0))

    @tf.function(jit_compile=True)
    def relu_sum(x):
        return tf.reduce_sum(tf.nn.relu(x))

    x = tf.constant([1.0, -1.0, 2.0])
    assert dynamic_hlo_shapes(positive_sum, x)
    assert dynamic_hlo_shapes(relu_sum, x) == []


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_pretraining_pipeline_has_static_shapes(preset, tokenizer):
    dataset = _pretraining_batches(preset, tokenizer)
    assert dynamic_dimensions(dataset.element_spec) == []
    assert assert_static_shapes(dataset) is dataset


def test_classification_pipeline_has_static_shapes(tokenizer):
    assert dynamic_dimensions(_classification_batches(tokenizer).element_spec) == []


def test_dynamic_shapes_are_reported_by_name():
    dataset = tf.data.Dataset.from_tensor_slices(
        {"token_ids": np.zeros([5, 8], np.int32), "padding_mask": np.ones([5, 8], np.int32)}
    ).batch(2)
    with pytest.raises(
        ValueError, match=r"\['padding_mask'\]: \(None, 8\).*\['token_ids'\]: \(None, 8\)"
    ):
        assert_static_shapes(dataset, name="train")
    ragged = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1, 2], [3]])).batch(
        2, drop_remainder=True
    )
    assert "RaggedTensorSpec" in dynamic_dimensions(ragged.element_spec)[0]


# The decoder-only presets and the dense baselines compile like the encoder-decoder, whose
# stacks they share: run by `make test-all`.
@pytest.mark.parametrize(
    "preset",
    [
        "switch_tiny_8",
        pytest.param("switch_lm_tiny_8", marks=pytest.mark.slow),
        pytest.param("glam_tiny_8", marks=pytest.mark.slow),
        pytest.param("dense_tiny", marks=pytest.mark.slow),
        pytest.param("dense_lm_tiny", marks=pytest.mark.slow),
    ],
)
def test_tiny_preset_training_step_compiles_static_with_einsum_dispatch(preset, tokenizer):
    dataset = assert_static_shapes(_pretraining_batches(preset, tokenizer))
    model = build_model(preset, tokenizer, dispatch="einsum", **SMALL)
    _compile(model)
    _assert_static_training(model, dataset)


@pytest.mark.slow
def test_tiny_classifier_training_step_compiles_static_with_einsum_dispatch(tokenizer):
    dataset = assert_static_shapes(_classification_batches(tokenizer))
    model = SwitchClassifier.from_preset(
        "switch_tiny_8",
        num_classes=45,
        vocabulary_size=tokenizer.vocabulary_size(),
        dispatch="einsum",
        **{k: v for k, v in SMALL.items()},
    )
    _compile(model)
    _assert_static_training(model, dataset)
