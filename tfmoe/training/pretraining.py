"""Pre-training with `model.fit`: the library behind `experiments/pretrain.py` and `make demo`.

```python
from tfmoe.training import PretrainConfig, run_pretraining
result = run_pretraining(PretrainConfig(model="switch_lm_tiny_8", steps=200, output_dir="/tmp/run"))
result["val_perplexity"], result["expert_load"]
```

Output directory layout:

- `backup/`: weights and optimizer state after each of the last two epochs
  (`tfmoe.training.backup`); running again with the same config resumes from the last
  finished epoch (`steps_per_epoch` steps), also after SIGKILL, on the batches an
  uninterrupted run would have seen. A different config in the same directory is refused,
  and so is a second process while the first one runs (`.lock`).
- `checkpoints/best.weights.h5`: best validation loss so far.
- `model.weights.h5`, `model_config.json`, `vocab.txt`: the final model and its tokenizer.
- `preset/`: the same model and tokenizer as a keras-hub preset directory
  (`tfmoe.models.save_task_preset`; load it with `tfmoe.models.load_task_preset`, or
  `experiments/finetune.py --init_from=OUTPUT_DIR/preset` / `experiments/export.py
  --preset=OUTPUT_DIR/preset`).
- `logs/`: TensorBoard (losses, perplexity, per-layer `dropped_fraction`,
  `expert_load_max`, `router_z_loss`; per-expert loads, histograms and heatmap
  under `logs/routing`).
- `history.jsonl`, `loss_curves.png`, `expert_load_heatmap.png`, `summary.json`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time

import keras
import numpy as np

from tfmoe.distribute.cluster import worker_output_dir
from tfmoe.training import backup
from tfmoe.training import callbacks as cb
from tfmoe.training import data as training_data


@dataclasses.dataclass
class PretrainConfig:
    model: str = "switch_lm_tiny_8"
    dataset: str = "default"
    vocabulary: str | None = None  # default: the bundled vocab.txt
    steps: int = 1000
    steps_per_epoch: int | None = None  # default: min(steps, 100); checkpoint/validation interval
    batch_size: int = 16
    sequence_length: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    mixed_precision: bool = False
    strategy: str = "auto"
    output_dir: str = "runs/pretrain"
    validation_steps: int | None = None  # default: the whole validation split
    seed: int = 0
    verbose: int = 1
    jit_compile: bool | str = "auto"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    data_dir: str | None = None


def model_class(kind):
    from tfmoe import models

    return models.SwitchDecoderLM if kind == "causal_lm" else models.SwitchTransformer


def validate(config: PretrainConfig) -> PretrainConfig:
    """Checks the config; raises ValueError / FileNotFoundError with a one-line message."""
    from tfmoe.models import get_preset

    for name in ("steps", "batch_size", "sequence_length", "steps_per_epoch", "validation_steps"):
        value = getattr(config, name)
        if value is None and name in ("steps_per_epoch", "validation_steps"):
            continue  # their defaults
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    warmup = config.warmup_steps
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"--warmup_steps must be an integer >= 0, got {warmup!r}")
    spe = config.steps_per_epoch or min(config.steps, 100)
    if config.steps % spe:
        raise ValueError(f"--steps={config.steps} must be a multiple of --steps_per_epoch={spe}")
    if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        raise ValueError(f"--learning_rate must be a finite number > 0, got {config.learning_rate}")
    get_preset(config.model)  # ValueError listing valid names
    vocabulary = config.vocabulary or training_data.DEFAULT_VOCABULARY
    if not os.path.isfile(vocabulary):
        raise FileNotFoundError(f"--vocabulary file not found: {vocabulary}")
    training_data.check_source(config.dataset)
    check_output_dir(config.output_dir)
    return dataclasses.replace(config, steps_per_epoch=spe, vocabulary=vocabulary)


def check_output_dir(path, flag="--output_dir"):
    """Raises ValueError (one line) unless `path` is a writable directory or can be created
    as one: neither `path` nor its nearest existing parent may be a file or read-only.

    Nothing is created here (see `make_output_dir`).
    """
    path = os.path.abspath(path)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    where = "" if existing == path else f": {existing}"
    if not os.path.isdir(existing):
        raise ValueError(f"{flag}={path}{where} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={path}{where} is not writable")


def make_output_dir(path, flag="--output_dir"):
    """Creates directory `path` (and its parents); ValueError (one line) if that fails."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create {flag}={path}: {error.strerror or error}") from None


def make_tokenizer(vocabulary):
    from tfmoe.tokenize import WordpieceTokenizer

    return WordpieceTokenizer(vocabulary)


def build_model(preset, tokenizer, **overrides):
    """The preset's model, sized to `tokenizer`'s vocabulary (not compiled)."""
    from tfmoe.models import get_preset

    kind = get_preset(preset)["kind"]
    special = {
        "vocabulary_size": tokenizer.vocabulary_size(),
        "pad_token_id": tokenizer.pad_token_id or 0,
    }
    if tokenizer.sep_token_id is not None:
        special["eos_token_id"] = tokenizer.sep_token_id
    if kind == "seq2seq":
        special["decoder_start_token_id"] = special["pad_token_id"]
    return model_class(kind).from_preset(preset, **{**special, **overrides})


def make_optimizer(learning_rate, steps, warmup_steps, weight_decay):
    warmup = min(warmup_steps, max(steps // 10, 1))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate * 0.01,
        decay_steps=max(steps - warmup, 1),
        warmup_target=learning_rate,
        warmup_steps=warmup,
        alpha=0.1,
    )
    return keras.optimizers.AdamW(schedule, weight_decay=weight_decay, clipnorm=1.0)


def compile_lm(model, optimizer, pad_token_id, jit_compile="auto", steps_per_execution=1):
    import keras_hub

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[
            keras_hub.metrics.Perplexity(
                from_logits=True, mask_token_id=pad_token_id, name="perplexity"
            )
        ],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )


def count_batches(dataset):
    return int(dataset.reduce(np.int64(0), lambda n, _: n + 1).numpy())


def run_pretraining(config: PretrainConfig) -> dict:
    """Trains (or resumes) the run described by `config`; returns the summary dict.

    Raises:
      ValueError / FileNotFoundError: bad configuration (one-line messages).
      tfmoe.training.callbacks.NonFiniteLossError: the loss became NaN/Inf.
    """
    from tfmoe.training.run_setup import prepare_run  # imports this module

    run = prepare_run(validate(config))
    # Every worker of a cluster saves (saving is collective); only the chief into output_dir.
    out = worker_output_dir(config.output_dir)
    with backup.RunDirectoryLock(out):
        return _train_in(out, run)


# Keys of model_config.json that may change between a run and its resume.
# (The model's and its backbone's names are Keras' per-process automatic names.)
RESUMABLE_CHANGES = (
    "pretrain_config.verbose",
    "pretrain_config.output_dir",
    "pretrain_config.jit_compile",
    "config.name",
    "config.backbone.config.name",
)


def _train_in(out, run):
    """Builds, resumes, trains and saves the run in `out` (whose lock the caller holds).

    `run`: the `tfmoe.training.run_setup.RunSetup` of the validated config.
    """
    config, strategy, setup, tokenizer = run.config, run.strategy, run.distribution, run.tokenizer
    with strategy.scope():
        model = build_model(config.model, tokenizer, **config.model_overrides)
        optimizer = run.optimizer()
        compile_lm(model, optimizer, tokenizer.pad_token_id or 0, **run.compile_options(model))
    run_config = {
        "preset": config.model,
        "kind": run.kind,
        "overrides": config.model_overrides,
        "vocabulary_size": tokenizer.vocabulary_size(),
        "config": model.get_config(),
        "pretrain_config": dataclasses.asdict(config),
    }
    config_path = os.path.join(out, "model_config.json")
    backup.check_resume_config(config_path, run_config, ignore=RESUMABLE_CHANGES)
    backup.write_json_atomic(config_path, run_config)
    shutil.copyfile(config.vocabulary, os.path.join(out, "vocab.txt"))

    backup_dir = os.path.join(out, "backup")
    resumed_from = backup.restore_latest(model, backup_dir)
    monitor = cb.TrainingMonitor(out, os.path.join(out, "logs"), config.steps_per_epoch)
    callbacks = [
        cb.NonFiniteGuard(),  # first: raises before anything saves a broken state
        monitor,  # before the backup: a kill in between re-runs (and re-records) the epoch
        backup.EpochBackup(backup_dir),
        keras.callbacks.ModelCheckpoint(
            os.path.join(out, "checkpoints", "best.weights.h5"),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
        ),
    ]
    callbacks.append(
        keras.callbacks.TensorBoard(
            os.path.join(out, "logs"), update_freq="epoch", write_graph=False
        )
    )
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    start = time.time()
    run.fit(model, callbacks, resumed_from=resumed_from)
    backup.save_weights_atomic(model, os.path.join(out, "model.weights.h5"))
    from tfmoe.models import save_task_preset

    preset_dir = os.path.join(out, "preset")
    shutil.rmtree(preset_dir, ignore_errors=True)
    save_task_preset(model, preset_dir, config.vocabulary, config.sequence_length)

    records = monitor.records()
    last = records[-1] if records else {}
    summary = {
        "model": config.model,
        "step": int(model.optimizer.iterations.numpy()),
        "epochs": len(records),
        "resumed_from_epoch": resumed_from,
        "val_loss": last.get("val_loss"),
        "val_perplexity": last.get("val_perplexity"),
        "train_loss": last.get("loss"),
        "train_time_s": sum(r.get("train_time") or 0.0 for r in records),
        "run_wall_s": time.time() - start,
        "num_replicas": strategy.num_replicas_in_sync,
        "expert_load": last.get("expert_load", {}),
        "dropped_fraction": {
            k.rsplit("/", 1)[0]: v
            for k, v in last.items()
            if k.endswith("/dropped_fraction") and not k.startswith("val_")
        },
        "mixed_precision": setup.mixed_precision,
        "distribution": setup.describe(),
    }
    backup.write_json_atomic(os.path.join(out, "summary.json"), summary)
    return {**summary, "model_object": model, "tokenizer": tokenizer, "history": records}


def skip_consumed(train, resumed_from_epoch, steps_per_epoch):
    """`train` without the batches of the epochs a resumed run already trained on.

    The training stream is seeded, so a resumed run then sees the same batches as an
    uninterrupted one (no token trained on twice).
    """
    return train.skip(resumed_from_epoch * steps_per_epoch)


def format_summary(summary) -> str:
    """Human-readable lines: perplexity, routing (expert load, dropped tokens)."""
    lines = [
        f"steps: {summary['step']}   validation loss: {summary['val_loss']:.4f}   "
        f"validation perplexity: {summary['val_perplexity']:.2f}"
        if summary.get("val_loss") is not None
        else f"steps: {summary['step']}"
    ]
    for name, load in (summary.get("expert_load") or {}).items():
        load = np.asarray(load)
        dropped = summary.get("dropped_fraction", {}).get(name)
        lines.append(
            f"{name}: expert load (token share x experts) "
            + " ".join(f"{x * len(load):.2f}" for x in load)
            + (
                f"   dropped {dropped:.3%}"
                if dropped is not None and math.isfinite(dropped)
                else ""
            )
        )
    return "\n".join(lines)
