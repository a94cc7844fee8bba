"""`make demo`: the main job on the bundled default corpus.

Until the training pipeline lands, this trains a small Keras model with a
`SwitchFeedForward` layer on a synthetic regression task and prints the routing
statistics, so a fresh install can be checked end to end.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmoe.layers import SwitchFeedForward  # noqa: E402


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=[512, 16, 32]).astype("float32")
    y = np.sin(x[..., :4]).sum(-1, keepdims=True).astype("float32")
    inputs = keras.Input((16, 32))
    h = inputs + SwitchFeedForward(8, 64, name="switch")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=2)
    stats = model.get_layer("switch").routing_stats
    print("final loss:", round(history.history["loss"][-1], 4))
    print("expert fraction:", np.round(stats["expert_fraction"].numpy(), 3))
    print("dropped fraction:", round(float(stats["dropped_fraction"]), 4))


if __name__ == "__main__":
    main()
