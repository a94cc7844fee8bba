"""Fine-tune a Switch encoder classifier (with expert dropout) on a classification task.

    python experiments/finetune.py --model=switch_tiny_8 --task=wordnet --steps=1000 \
        --expert_dropout=0.4 --output_dir=runs/wordnet
    python experiments/finetune.py --task=train.tsv --validation_task=dev.tsv ...   # columns text, label
    python experiments/finetune.py --task=tfds:imdb_reviews ...                     # supervised TFDS
    python experiments/finetune.py --task=wordnet --freeze_router --capacity_factor=1.25 \
        --z_loss_weight=0.001 --expert_dropout=0.4 ...        # ST-MoE sparse fine-tuning

`--init_from=DIR` starts from a pretrained keras-hub preset directory of a seq2seq model
(`pretrain.py`'s `OUTPUT_DIR/preset/`): its token embedding and encoder weights, matched by
name (`tfmoe.models.init_backbone_from_preset`), and its vocabulary. A converted Hugging Face
checkpoint's preset (`python -m tfmoe.convert`) also gives the architecture (its encoder
half, instead of `--model`'s) and its T5 SentencePiece tokenizer.
Sparse fine-tuning (ST-MoE): `--freeze_router --capacity_factor=1.25 --expert_dropout=0.4
--z_loss_weight=0.001`. The run ends by writing
the classifier, its tokenizer and label names as a keras-hub preset in `OUTPUT_DIR/preset/`
(`tfmoe.models.load_task_preset`, `experiments/export.py --preset`). Resumable like pretrain.py (epoch backups, `tfmoe.training.backup`).
Tasks: `wordnet` (WordNet supersenses, 45 classes; the bundled subset of the glosses, or
a full glosses file given by `--wordnet_glosses=PATH` or `$TFMOE_WORDNET_GLOSSES`), a UTF-8
TSV file with a header and `text` and `label` columns (labels: any non-empty strings, at least 2
classes; the validation split is every 10th row unless `--validation_task` is given),
or `tfds:NAME` with (text, label) supervised keys.
"""

import json
import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from absl import app, flags  # noqa: E402

from tfmoe import cli  # noqa: E402

FLAGS = flags.FLAGS
fail = cli.failer("finetune.py")
flags.DEFINE_string("model", "switch_tiny_8", "seq2seq preset whose encoder is used")
flags.DEFINE_string("task", "wordnet", "'wordnet', a TSV file (text, label columns) or tfds:NAME")
flags.DEFINE_string(
    "validation_task", None, "TSV file for validation (default: every 10th row of --task)"
)
flags.DEFINE_string(
    "wordnet_glosses",
    None,
    "--task=wordnet: a full WordNet glosses TSV (default: "
    "$TFMOE_WORDNET_GLOSSES if set, else the bundled subset)",
)
flags.DEFINE_string(
    "vocabulary", None, "WordPiece vocabulary (default: --init_from's, else the bundled one)"
)
flags.DEFINE_string(
    "init_from", None, "pretrained seq2seq preset directory (pretrain.py's OUTPUT_DIR/preset)"
)
flags.DEFINE_integer("steps", 500, "training steps", lower_bound=1)
flags.DEFINE_integer(
    "steps_per_epoch", None, "validation/backup interval (default min(steps, 100))", lower_bound=1
)
flags.DEFINE_integer("batch_size", 32, "batch size", lower_bound=1)
flags.DEFINE_integer("sequence_length", 64, "tokens per example", lower_bound=1)
flags.DEFINE_float("learning_rate", 5e-4, "peak learning rate")
flags.DEFINE_float("dropout", 0.1, "dropout")
flags.DEFINE_float(
    "expert_dropout", 0.4, "dropout inside the experts (Switch paper fine-tuning: 0.4)"
)
flags.DEFINE_bool("freeze_router", False, "keep the MoE routers fixed (ST-MoE fine-tuning)")
flags.DEFINE_float(
    "capacity_factor",
    None,
    "training capacity factor (default: the preset's; ST-MoE: 1.25); replaces a converted "
    "checkpoint's per-sequence expert_capacity",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "z_loss_weight",
    None,
    "router z-loss weight (default: the preset's; ST-MoE: 0.001)",
    lower_bound=0.0,
)
flags.DEFINE_enum(
    "strategy", "auto", ["auto", "cpu", "gpu", "mirrored", "tpu", "multi_worker"], "strategy"
)
flags.DEFINE_integer(
    "cpu_replicas", 1, "split the CPU into this many logical devices", lower_bound=1
)
flags.DEFINE_bool("mixed_precision", False, "mixed_bfloat16")
flags.DEFINE_string("output_dir", "runs/finetune", "outputs")
flags.DEFINE_integer("seed", 0, "seed")
flags.DEFINE_integer("verbose", 1, "fit verbosity")


def load_task(task, validation_task, wordnet_glosses=None):
    """`(train, validation, test_or_None, label_names)` datasets of (text, int label).

    `wordnet_glosses`: the glosses file for `task == "wordnet"` (None: see
    `tfmoe.data.corpus.wordnet_glosses_file`).
    """
    import tensorflow as tf

    from tfmoe import data as tfmoe_data
    from tfmoe.data import files

    if task == "wordnet":
        return tfmoe_data.wordnet_supersense_splits(wordnet_glosses)
    if wordnet_glosses is not None:
        raise ValueError(f"--wordnet_glosses is for --task=wordnet, not --task={task}")
    if task.startswith("tfds:"):
        import tensorflow_datasets as tfds

        name = task[len("tfds:") :]
        builder = tfds.builder(name)
        builder.download_and_prepare()
        keys = builder.info.supervised_keys
        if not keys:
            raise ValueError(f"--task={task} has no supervised (text, label) keys")
        splits = builder.info.splits
        validation_split = "validation" if "validation" in splits else "test"
        train = builder.as_dataset(split="train", as_supervised=True)
        validation = builder.as_dataset(split=validation_split, as_supervised=True)
        names = builder.info.features[keys[1]].names
        cast = lambda t, y: (t, tf.cast(y, tf.int32))  # noqa: E731
        return train.map(cast), validation.map(cast), None, list(names)

    def read(flag, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--{flag} file not found: {path}")
        texts, labels = files.read_labelled_tsv(path)
        if not texts:
            raise ValueError(f"--{flag}={path} has a header but no rows")
        return texts, labels

    texts, labels = read("task", task)
    if validation_task:
        v_texts, v_labels = read("validation_task", validation_task)
    else:
        v_texts, v_labels = texts[::10], labels[::10]
        texts = [t for i, t in enumerate(texts) if i % 10]
        labels = [y for i, y in enumerate(labels) if i % 10]
        if not texts:
            raise ValueError(
                f"--task={task} has 1 row: too few to hold out every 10th for validation"
            )
    names = sorted(set(labels) | set(v_labels))
    if len(names) < 2:
        raise ValueError(
            f"--task={task} has {len(names)} class ({names[0]!r}): a classifier needs at least 2"
        )
    index = {n: i for i, n in enumerate(names)}

    def dataset(t, y):
        return tf.data.Dataset.from_tensor_slices(
            (tf.constant(t, tf.string), tf.constant([index[v] for v in y], tf.int32))
        )

    return dataset(texts, labels), dataset(v_texts, v_labels), None, names


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfmoe.training import split_cpu

    split_cpu(FLAGS.cpu_replicas)
    try:
        run()
    except (ValueError, OSError) as error:  # OSError: FileNotFoundError, unreadable gzip
        fail(str(error).strip().splitlines()[0])


def run():
    from tfmoe import data as tfmoe_data
    from tfmoe.distribute import worker_output_dir
    from tfmoe.models import get_preset
    from tfmoe.training import backup
    from tfmoe.training.data import DEFAULT_VOCABULARY
    from tfmoe.training.pretraining import check_output_dir, make_output_dir, make_tokenizer
    from tfmoe.training.run_setup import prepare_distribution

    spe = FLAGS.steps_per_epoch or min(FLAGS.steps, 100)
    if FLAGS.steps % spe:
        raise ValueError(f"--steps={FLAGS.steps} must be a multiple of --steps_per_epoch={spe}")
    if get_preset(FLAGS.model)["kind"] != "seq2seq":
        raise ValueError(
            f"--model={FLAGS.model} is not a seq2seq preset (the classifier uses an encoder)"
        )
    from tfmoe.models.switch_sentencepiece_tokenizer import SPIECE_FILE
    from tfmoe.models.switch_tokenizer import VOCABULARY_FILE

    # A converted checkpoint's preset (`python -m tfmoe.convert`) brings its T5 tokenizer.
    converted = bool(FLAGS.init_from) and os.path.isfile(
        os.path.join(FLAGS.init_from, "assets", "tokenizer", SPIECE_FILE)
    )
    vocabulary = FLAGS.vocabulary or (
        os.path.join(FLAGS.init_from, "assets", "tokenizer", VOCABULARY_FILE)
        if FLAGS.init_from
        else DEFAULT_VOCABULARY
    )
    if converted and FLAGS.vocabulary:
        raise ValueError(
            "--vocabulary does not apply to a converted preset (it has its SentencePiece model)"
        )
    if not converted and not os.path.isfile(vocabulary):
        raise FileNotFoundError(f"vocabulary file not found: {vocabulary}")
    check_output_dir(FLAGS.output_dir)
    strategy, setup = prepare_distribution(
        FLAGS.strategy,
        batch_size=FLAGS.batch_size,
        mixed_precision=FLAGS.mixed_precision,
        seed=FLAGS.seed,
    )
    preset_tokenizer = None
    if converted:
        import keras_hub

        preset_tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(FLAGS.init_from)
        tokenizer = preset_tokenizer.sentencepiece  # texts end with `</s>`, as in T5
    else:
        tokenizer = make_tokenizer(vocabulary)
    train, validation, test, label_names = load_task(
        FLAGS.task, FLAGS.validation_task, FLAGS.wordnet_glosses
    )

    def batches(examples, training, cache=True):
        return tfmoe_data.classification_dataset(
            examples,
            tokenizer,
            sequence_length=FLAGS.sequence_length,
            batch_size=FLAGS.batch_size,
            # The whole split: the WordNet files are sorted by class.
            shuffle_buffer_size=200_000 if training else 0,
            seed=FLAGS.seed,
            repeat=training,
            cache=cache,
        )

    train_batches, validation_batches = batches(train, True), batches(validation, False)
    # Without a validation batch `evaluate` returns no accuracy. Not cached: a partly
    # read cache is discarded with a warning.
    if not any(True for _ in batches(validation, False, cache=False).take(1)):
        raise ValueError(
            f"the validation split of --task={FLAGS.task} holds less than one batch "
            f"of --batch_size={FLAGS.batch_size} examples"
        )
    out = worker_output_dir(FLAGS.output_dir)  # only the chief writes to --output_dir
    make_output_dir(out)
    with backup.RunDirectoryLock(out):
        train_and_evaluate(
            out,
            spe,
            strategy,
            setup,
            tokenizer,
            label_names,
            train_batches,
            validation_batches,
            None if test is None else batches(test, False),
            preset_tokenizer,
        )


def train_and_evaluate(
    out,
    spe,
    strategy,
    setup,
    tokenizer,
    label_names,
    train_batches,
    validation_batches,
    test_batches,
    preset_tokenizer=None,
):
    """Builds (or resumes) the classifier in `out`, trains, evaluates and writes results.json.

    `preset_tokenizer`: the keras-hub tokenizer of a converted `--init_from` preset, whose
    architecture the classifier then takes (its encoder half) instead of `--model`'s.
    """
    import keras

    from tfmoe.models import (
        SwitchBackbone,
        SwitchClassifier,
        encoder_only_config,
        init_backbone_from_preset,
        save_task_preset,
    )
    from tfmoe.training import (
        NonFiniteGuard,
        NonFiniteLossError,
        TrainingMonitor,
        backup,
        freeze_routers,
    )
    from tfmoe.training.pretraining import make_optimizer, skip_consumed

    options = dict(dropout=FLAGS.dropout, expert_dropout=FLAGS.expert_dropout)
    if preset_tokenizer is None:
        options.update(
            vocabulary_size=tokenizer.vocabulary_size(), pad_token_id=tokenizer.pad_token_id or 0
        )
    if FLAGS.capacity_factor is not None:
        # Capacity factors apply only without a (converted) per-sequence expert_capacity.
        options.update(capacity_factor=FLAGS.capacity_factor, expert_capacity=None)
    if FLAGS.z_loss_weight is not None:
        options["z_loss_weight"] = FLAGS.z_loss_weight
    with strategy.scope():
        if preset_tokenizer is None:
            model = SwitchClassifier.from_preset(
                FLAGS.model, num_classes=len(label_names), **options
            )
        else:
            backbone = SwitchBackbone(**{**encoder_only_config(FLAGS.init_from), **options})
            model = SwitchClassifier(backbone, num_classes=len(label_names))
        if FLAGS.init_from:
            init_backbone_from_preset(model.backbone, FLAGS.init_from)
            print(f"initialised the embedding and encoder from {FLAGS.init_from}")
        if FLAGS.freeze_router:
            print(f"froze {freeze_routers(model)} routers")
        model.compile(
            optimizer=make_optimizer(FLAGS.learning_rate, FLAGS.steps, 50, 0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            steps_per_execution=setup.steps_per_execution,
            jit_compile=setup.jit_compile_for(model),
        )
    backup_dir = os.path.join(out, "backup")
    resumed_from = backup.restore_latest(model, backup_dir)
    monitor = TrainingMonitor(out, os.path.join(out, "logs"), spe)
    callbacks = [
        NonFiniteGuard(),
        monitor,
        backup.EpochBackup(backup_dir),
        keras.callbacks.ModelCheckpoint(
            os.path.join(out, "best.weights.h5"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
        ),
    ]
    try:
        model.fit(
            skip_consumed(train_batches, resumed_from, spe),
            epochs=FLAGS.steps // spe,
            initial_epoch=resumed_from,
            steps_per_epoch=spe,
            validation_data=validation_batches,
            callbacks=callbacks,
            verbose=FLAGS.verbose,
        )
    except NonFiniteLossError as error:
        fail(f"training stopped: {error}")
    backup.save_weights_atomic(model, os.path.join(out, "model.weights.h5"))
    preset_dir = os.path.join(out, "preset")
    shutil.rmtree(preset_dir, ignore_errors=True)
    save_task_preset(
        model,
        preset_dir,
        tokenizer.get_vocabulary(),
        FLAGS.sequence_length,
        label_names=label_names,
        tokenizer=preset_tokenizer,
    )
    results = {
        "step": int(model.optimizer.iterations.numpy()),
        "num_classes": len(label_names),
        "validation": model.evaluate(validation_batches, verbose=0, return_dict=True),
    }
    if test_batches is not None:
        results["test"] = model.evaluate(test_batches, verbose=0, return_dict=True)
    results = json.loads(json.dumps(results, default=float))
    backup.write_json_atomic(os.path.join(out, "results.json"), results)
    for split in ("validation", "test"):
        if split in results:
            print(
                f"{split}: accuracy {results[split]['accuracy']:.4f}  loss {results[split]['loss']:.4f}"
            )
    print(f"outputs in {out}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser("finetune.py"))
