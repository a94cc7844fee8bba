"""A tiny switch LM trained with `model.fit` under any strategy (shared by the distribution tests).

Run as a script it is one worker of a multi-worker cluster (`TF_CONFIG` set by the
test): `python tests/distributed_fit.py OUTPUT_JSON`. It writes the per-step losses
and a digest of the final weights, plus the weights themselves as `.npz`.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 8
SEQ = 16
VOCAB = 96
STEPS = 4
REPLICAS = 2
# Routing groups are formed on each replica from its share of the batch; groups of one
# replica's tokens route the same in one process (two groups per batch) as on two replicas.
MODEL_OPTIONS = dict(
    vocabulary_size=VOCAB,
    hidden_dim=32,
    num_heads=2,
    key_value_dim=16,
    intermediate_dim=64,
    num_layers=2,
    num_experts=4,
    capacity_factor=1.0,
    load_balance_weight=0.01,
    group_size=GLOBAL_BATCH // REPLICAS * SEQ,
)


def dataset(steps=STEPS, batch=GLOBAL_BATCH):
    """Deterministic `(features, labels)` batches of random tokens, every token real.

    No padding, so a per-replica mean equals the global mean and losses compare exactly.
    """
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, size=[steps * batch, SEQ + 1]).astype(np.int32)
    # A learnable signal: the next token is often the current one plus one.
    ids[:, 1::2] = (ids[:, 0:-1:2] + 1) % VOCAB
    # Bool masks, as the tfmoe pipelines give: Keras' own first-batch build would
    # MEAN-reduce them under a strategy and fail (`DistributedBuildMixin` avoids it).
    features = {"token_ids": ids[:, :-1], "padding_mask": np.ones([steps * batch, SEQ], bool)}
    return tf.data.Dataset.from_tensor_slices((features, ids[:, 1:])).batch(
        batch, drop_remainder=True
    )


def build_and_compile(strategy, dispatch="gather", jit_compile=False, steps_per_execution=1):
    from tfmoe.models import SwitchDecoderLM

    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = SwitchDecoderLM.from_preset("switch_lm_tiny_8", dispatch=dispatch, **MODEL_OPTIONS)
        # SGD: Adam divides by the gradient's own scale, so float noise in near-zero
        # gradients would become full-size updates and hide real differences.
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
    return model


def train(strategy, steps=STEPS, **compile_options):
    """Returns `(model, per-step losses)`: one epoch per step, so history holds each step's loss."""
    model = build_and_compile(strategy, **compile_options)
    history = model.fit(dataset(steps), epochs=steps, steps_per_epoch=1, verbose=0, shuffle=False)
    return model, [float(x) for x in history.history["loss"]]


def main(output_json):
    keras.config.disable_traceback_filtering()
    from tfmoe.distribute import configure, task_info

    setup = configure("multi_worker", global_batch_size=GLOBAL_BATCH, mixed_precision="float32")
    model, losses = train(setup.strategy)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(output_json.replace(".json", ".npz"), **weights)
    with open(output_json, "w") as f:
        json.dump(
            {
                "task": task_info(),
                "kind": setup.kind,
                "replicas": setup.num_replicas,
                "losses": losses,
            },
            f,
        )


if __name__ == "__main__":
    main(sys.argv[1])
