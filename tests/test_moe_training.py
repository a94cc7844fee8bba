"""Training the MoE layers with model.fit: MirroredStrategy, XLA, logged routing metrics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmoe.layers import SwitchFeedForward, Top2FeedForward

SEQ, HIDDEN, BATCH = 8, 16, 8


def _data(num=32, seed=0, pad_every=3):
    """`num` sequences; rows `0, pad_every, 2 * pad_every, ...` end in 3 padding tokens."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=[num, SEQ, HIDDEN]).astype(np.float32)
    y = np.tanh(x[..., :1] * 2.0 + x[..., 1:2]).astype(np.float32)
    # int32, not bool: Keras 3.15's fit under MirroredStrategy MEAN-reduces the first
    # batch (Trainer._maybe_symbolic_build), which fails on bool tensors.
    mask = np.ones([num, SEQ], np.int32)
    mask[::pad_every, -3:] = 0
    return x, mask, y


def _model(cls=SwitchFeedForward, **layer_kwargs):
    inputs = keras.Input((SEQ, HIDDEN))
    mask = keras.Input((SEQ,), dtype="int32")
    h = keras.layers.Dense(HIDDEN, name="proj")(inputs)
    h = h + cls(4, 32, name="moe", **layer_kwargs)(h, padding_mask=mask)
    outputs = keras.layers.Dense(1, name="head")(h)
    return keras.Model([inputs, mask], outputs)


def _train(strategy, initial_weights, steps=3, pad_every=3, **layer_kwargs):
    x, mask, y = _data(pad_every=pad_every)
    with strategy.scope():
        model = _model(**layer_kwargs)
        model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(
        [x, mask], y, batch_size=BATCH, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0
    )
    return model


def test_mirrored_strategy_matches_single_device(mirrored_cpus):
    # Routing groups form within each replica's share of the batch (4 rows here): groups
    # of at most 4 rows make the single-device run route exactly like the mirrored one.
    kwargs = dict(
        load_balance_weight=0.5, z_loss_weight=0.1, capacity_factor=1.0, group_size=4 * SEQ
    )
    keras.utils.set_random_seed(0)
    initial = _model(**kwargs).get_weights()
    # Every other row padded: each replica's half of a batch holds the same number of
    # real tokens, so the per-replica token means of the z-loss average to the global
    # one and the two runs compute the same objective. (With unequal padding per
    # replica they differ by nature: ~0.5-3% of the router update here.)
    single = _train(tf.distribute.get_strategy(), initial, pad_every=2, **kwargs)
    mirrored = _train(mirrored_cpus, initial, pad_every=2, **kwargs)
    # Scaling the auxiliary losses wrongly by the replica count changes the router
    # update by ~100%; float summation order leaves ~1e-5.
    for name, a, b, start in zip(
        ("proj", "proj_bias", "router", "wi", "wo", "head", "head_bias"),
        single.get_weights(),
        mirrored.get_weights(),
        initial,
    ):
        update, other = a - start, b - start
        error = np.abs(update - other).max() / np.abs(update).max()
        assert error < 1e-3, f"{name}: mirrored update differs by {error:.3%}"
    # The auxiliary losses were really part of the objective: the router moved.
    assert not np.allclose(initial[2], single.get_layer("moe").router.kernel.numpy())


@pytest.mark.parametrize("cls", [SwitchFeedForward, Top2FeedForward])
@pytest.mark.parametrize("dispatch", ["gather", "einsum"])
def test_jit_compiled_training_step(cls, dispatch):
    x, mask, y = _data()
    model = _model(cls, dispatch=dispatch, z_loss_weight=1e-3, jitter_noise=0.01)
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    history = model.fit([x, mask], y, batch_size=BATCH, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_fit_logs_routing_metrics_and_keeps_routing_stats():
    x, mask, y = _data()
    model = _model(Top2FeedForward, capacity_factor=0.5)
    model.compile(optimizer="adam", loss="mse")
    history = model.fit([x, mask], y, batch_size=BATCH, epochs=1, verbose=0)
    logs = history.history
    assert 0.0 < logs["moe/dropped_fraction"][0] < 1.0
    assert 1.0 <= logs["moe/expert_load_max"][0] <= 4.0
    assert logs["moe/router_z_loss"][0] > 0
    stats = model.get_layer("moe").routing_stats
    fraction = stats["expert_fraction"].numpy()
    assert fraction.shape == (4,) and fraction.sum() == pytest.approx(1.0, abs=1e-5)
    assert 0.0 < float(stats["dropped_fraction"]) < 1.0


def test_routing_metrics_can_be_silenced():
    x, mask, y = _data()
    model = _model(routing_metrics=False)
    model.compile(optimizer="adam", loss="mse")
    history = model.fit([x, mask], y, batch_size=BATCH, epochs=1, verbose=0)
    assert not any(key.startswith("moe/") for key in history.history)
    assert float(model.get_layer("moe").routing_stats["router_z_loss"]) > 0
