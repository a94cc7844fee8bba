"""`tfmoe.training.freeze_routers`: fine-tuning leaves the routers as they were."""

import numpy as np

from tfmoe.models import SwitchClassifier
from tfmoe.training import freeze_routers, moe_layers


def test_frozen_routers_do_not_train_and_the_rest_does():
    model = SwitchClassifier.from_preset(
        "switch_tiny_8",
        num_classes=3,
        vocabulary_size=50,
        hidden_dim=16,
        num_heads=2,
        key_value_dim=8,
        intermediate_dim=16,
        num_layers=2,
        sparse_step=1,
        z_loss_weight=0.001,
    )
    assert freeze_routers(model) == 2
    routers = [layer.router for layer in moe_layers(model)]
    assert all(not router.trainable and not router.trainable_weights for router in routers)
    before = [np.array(w) for router in routers for w in router.weights]
    experts = [np.array(layer.experts.weights[0]) for layer in moe_layers(model)]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, 50, (8, 12)).astype("int32"),
        "padding_mask": np.ones((8, 12), bool),
    }
    model.fit(x, rng.integers(0, 3, 8), batch_size=8, epochs=2, verbose=0)
    after = [np.array(w) for router in routers for w in router.weights]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(np.array(layer.experts.weights[0]), e)
        for layer, e in zip(moe_layers(model), experts)
    )
