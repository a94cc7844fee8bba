"""Pre-train a tfmoe model with `model.fit` (resumable, TensorBoard, plots).

    python experiments/pretrain.py --model=switch_lm_tiny_8 --dataset=default \
        --steps=2000 --batch_size=16 --sequence_length=128 --output_dir=runs/lm

Kill it at any time (even SIGKILL) and run the same command again: it resumes from
the last backup (every `--steps_per_epoch` steps) and ends at `--steps`.
Decoder-only presets train next-token prediction, seq2seq presets T5 span corruption.
See `tfmoe.training.pretraining` for the output layout.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from absl import app, flags  # noqa: E402

from tfmoe import cli  # noqa: E402

FLAGS = flags.FLAGS
fail = cli.failer("pretrain.py")
flags.DEFINE_string("model", "switch_lm_tiny_8", "preset name (tfmoe.models.list_presets())")
flags.DEFINE_string(
    "dataset", "default", "'default' (bundled corpus), 'tfds:NAME[/CONFIG]' or a text/TSV file"
)
flags.DEFINE_string(
    "vocabulary", None, "WordPiece vocabulary file (default: the bundled vocab.txt)"
)
flags.DEFINE_integer("steps", 1000, "total training steps", lower_bound=1)
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "steps between validation/backups (default min(steps, 100))",
    lower_bound=1,
)
flags.DEFINE_integer("batch_size", 16, "global batch size", lower_bound=1)
flags.DEFINE_integer(
    "sequence_length", 128, "tokens per example (encoder length for seq2seq)", lower_bound=1
)
flags.DEFINE_float("learning_rate", 1e-3, "peak learning rate (warm-up then cosine decay)")
flags.DEFINE_integer("warmup_steps", 100, "learning-rate warm-up steps", lower_bound=0)
flags.DEFINE_bool("mixed_precision", False, "train in mixed_bfloat16")
flags.DEFINE_enum(
    "strategy",
    "auto",
    ["auto", "cpu", "gpu", "mirrored", "tpu", "multi_worker"],
    "tf.distribute strategy; auto = TPU, else all GPUs, else CPU",
)
flags.DEFINE_integer(
    "cpu_replicas",
    1,
    "split the CPU into this many logical devices (CPU mirrored testing)",
    lower_bound=1,
)
flags.DEFINE_string("output_dir", "runs/pretrain", "checkpoints, backups, logs, plots")
flags.DEFINE_integer(
    "validation_steps",
    None,
    "validation batches per evaluation (default: whole split)",
    lower_bound=1,
)
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar, 2 one line per epoch")
flags.DEFINE_multi_string(
    "override", [], "model override KEY=VALUE (e.g. num_experts=16), repeatable"
)


def parse_overrides(items):
    import ast

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--override must be KEY=VALUE, got {item!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfmoe.training import split_cpu

    split_cpu(FLAGS.cpu_replicas)
    from tfmoe.training import (
        NonFiniteLossError,
        PretrainConfig,
        StrategyError,
        format_summary,
        run_pretraining,
    )

    try:
        config = PretrainConfig(
            model=FLAGS.model,
            dataset=FLAGS.dataset,
            vocabulary=FLAGS.vocabulary,
            steps=FLAGS.steps,
            steps_per_epoch=FLAGS.steps_per_epoch,
            batch_size=FLAGS.batch_size,
            sequence_length=FLAGS.sequence_length,
            learning_rate=FLAGS.learning_rate,
            warmup_steps=FLAGS.warmup_steps,
            mixed_precision=FLAGS.mixed_precision,
            strategy=FLAGS.strategy,
            output_dir=FLAGS.output_dir,
            validation_steps=FLAGS.validation_steps,
            seed=FLAGS.seed,
            verbose=FLAGS.verbose,
            model_overrides=parse_overrides(FLAGS.override),
        )
        summary = run_pretraining(config)
    except NonFiniteLossError as error:
        fail(f"training stopped: {error}")
    except (ValueError, FileNotFoundError, StrategyError) as error:
        fail(str(error).strip().splitlines()[0])
    print(format_summary(summary))
    print(f"outputs in {config.output_dir}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser("pretrain.py"))
