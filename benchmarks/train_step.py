"""Training-step wall time of sparse presets relative to their dense twin, side by side.

One `model.fit` step (forward, backward, AdamW update, routing metrics on) of each preset
on the same random token batches, as `experiments/compare.py` trains them. Steps are
timed in rounds that visit every model in turn (so machine noise hits all of them alike);
each model's figure is the median over rounds of its mean step time within a round.

Usage:
  python benchmarks/train_step.py                       # the capacity-limited presets
  python benchmarks/train_step.py --models dense_lm_tiny switch_lm_tiny_8 glam_tiny_8 \
      --batch_size 16 --sequence_length 64              # the demo's presets and batch
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfmoe.training.pretraining import compile_lm, make_optimizer  # noqa: E402

VOCABULARY = 7772  # the bundled WordPiece vocabulary


def make_model(preset, seed=0):
    from tfmoe.models import SwitchDecoderLM

    keras.utils.set_random_seed(seed)
    model = SwitchDecoderLM.from_preset(preset, vocabulary_size=VOCABULARY)
    compile_lm(model, make_optimizer(2e-3, 1000, 100, 0.01), pad_token_id=0, jit_compile=False)
    return model


def batches(batch_size, sequence_length, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCABULARY, (64, batch_size, sequence_length + 1)).astype("int32")
    features = {"token_ids": ids[:, :, :-1], "padding_mask": np.ones_like(ids[:, :, :-1])}
    data = tf.data.Dataset.from_tensor_slices((features, ids[:, :, 1:]))
    return data.repeat()


def time_steps(models, data, steps_per_round, rounds):
    """`{preset: median over rounds of the mean seconds per step}`."""
    for model in models.values():  # trace and warm up
        model.fit(data, steps_per_epoch=steps_per_round, epochs=1, verbose=0)
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(data, steps_per_epoch=steps_per_round, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - start) / steps_per_round)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[
            "dense_lm_small",
            "switch_lm_small_8",
            "switch_lm_small_16",
            "switch_lm_small_32",
            "switch_lm_small_64",
            "glam_lm_small_8",
        ],
        help="presets; the first is the baseline",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--sequence_length", type=int, default=128)
    parser.add_argument("--steps_per_round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    data = batches(args.batch_size, args.sequence_length)
    models = {name: make_model(name) for name in args.models}
    times = time_steps(models, data, args.steps_per_round, args.rounds)
    baseline = times[args.models[0]]
    print(
        f"batch {args.batch_size} x {args.sequence_length} tokens, median of {args.rounds} rounds "
        f"of {args.steps_per_round} steps"
    )
    print("| preset | s / step | vs " + args.models[0] + " |")
    print("|---|---|---|")
    for name, seconds in times.items():
        print(f"| `{name}` | {seconds:.3f} | {seconds / baseline:.2f}x |")


if __name__ == "__main__":
    main()
