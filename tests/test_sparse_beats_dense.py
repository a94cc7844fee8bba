"""Guard that the experts are really used: more parameters at equal FLOPs must win.

A synthetic memorisation task, too large for one dense feed-forward network: every
key is a fixed random vector (not trainable, so only the feed-forward network can
store the table) mapped to a random value class. A Switch layer with 8 experts has 8x
the parameters of its dense twin at the same FLOPs per token; if routing collapses to
one expert, or the experts are bypassed (dropped, silenced at init), it cannot beat
the dense twin, and this test fails. A collapsed-router control shows it can.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmoe.layers import DenseFeedForward, RMSNorm, SwitchFeedForward

KEYS, VALUES, HIDDEN, INTERMEDIATE, EXPERTS = 4096, 64, 32, 64, 8
STEPS, BATCH = 300, 256


def _table(seed=0):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=[KEYS, HIDDEN]).astype("float32")
    return keys, rng.integers(0, VALUES, KEYS).astype("int32")


def _model(feed_forward, keys):
    """key id -> fixed key vector -> x + feed_forward(norm(x)) -> value logits."""
    ids = keras.Input((1,), dtype="int32")
    x = keras.layers.Embedding(
        KEYS, HIDDEN, embeddings_initializer=keras.initializers.Constant(keys), trainable=False
    )(ids)
    x = x + feed_forward(RMSNorm()(x))
    logits = keras.layers.Dense(VALUES)(keras.layers.Flatten()(x))
    return keras.Model(ids, logits)


def _train(feed_forward, seed=0, freeze_router=False):
    """Final training loss (mean of the last 20 steps) and the layer."""
    keras.utils.set_random_seed(seed)
    keys, values = _table()
    model = _model(feed_forward, keys)
    if freeze_router:
        feed_forward.router.kernel.assign(tf.zeros_like(feed_forward.router.kernel))
        feed_forward.router.trainable = False
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(seed)
    batches = rng.integers(0, KEYS, [STEPS, BATCH, 1]).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((batches, values[batches[..., 0]])).repeat()
    history = model.fit(dataset, steps_per_epoch=20, epochs=STEPS // 20, verbose=0)
    return float(np.mean(history.history["loss"][-1])), feed_forward


@pytest.fixture(scope="module")
def dense_loss():
    return _train(DenseFeedForward(INTERMEDIATE, activation="gelu", gated=True))[0]


def test_switch_layer_beats_its_dense_twin_at_equal_flops(dense_loss):
    loss, layer = _train(SwitchFeedForward(EXPERTS, INTERMEDIATE, activation="gelu", gated=True))
    assert loss < dense_loss - 0.5, (loss, dense_loss)
    # Every expert holds part of the table: no collapse onto a few experts.
    fraction = layer.routing_tracker.assignments.numpy()
    fraction = fraction / fraction.sum()
    assert fraction.min() > 0.25 / EXPERTS and fraction.max() < 2.5 / EXPERTS, fraction


def test_guard_catches_a_collapsed_router(dense_loss):
    """All tokens on expert 0 (a zero, frozen router): capacity drops the rest, no win."""
    loss, layer = _train(
        SwitchFeedForward(EXPERTS, INTERMEDIATE, activation="gelu", gated=True), freeze_router=True
    )
    assert float(layer.routing_stats["dropped_fraction"]) > 0.5
    assert not loss < dense_loss - 0.5, (loss, dense_loss)
