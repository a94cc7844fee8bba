"""Sparse-to-dense distillation (Switch Transformers, section 5.1): how much of a sparse
teacher's quality gain over a FLOPs-matched dense model survives in a dense student.

    python experiments/distill.py --steps=1000 --output_dir=runs/distill

1. Trains `--dense` (default `dense_lm_tiny`) and `--teacher` (default
   `switch_lm_tiny_8`: the same network with every other feed-forward replaced by top-1
   experts, so each token costs the same FLOPs) with `tfmoe.training.run_pretraining`:
   same data, steps, batch, schedule and seed. A run already complete in
   `--output_dir/dense` or `--output_dir/teacher` (same configuration) is loaded, not
   retrained; a partial one resumes.
2. For each `--mix=HARD:SOFT`, trains a student of the dense architecture with
   `tfmoe.models.Distiller` (`HARD * label CE + SOFT * T^2 * KL(teacher || student)`)
   for `--distill_steps` (default `--steps`) on the same batches and schedule,
   initialised from the teacher's non-expert weights (`--init_from_teacher`,
   `tfmoe.models.init_student_from_teacher`). `--mix=1:0` is the "teacher init, no
   distillation" control. Default mixes: `0.25:0.75` and `1:0`.
3. Evaluates every model on the same validation batches (token cross-entropy of the
   labels, padding excluded) and writes `distill.md` (table), `distill.json` and
   `distill_steps.png` in `--output_dir`, and prints the table.

Share of the teacher's gain kept = (CE_dense - CE_student) / (CE_dense - CE_teacher).
When the teacher is not better than the dense baseline by at least
`--min_teacher_gain` nats, no share is reported (it would be meaningless).
"""

import dataclasses
import json
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from absl import app, flags  # noqa: E402

from tfmoe import cli  # noqa: E402

FLAGS = flags.FLAGS
fail = cli.failer("distill.py")
flags.DEFINE_string(
    "dense", "dense_lm_tiny", "dense preset: the baseline, and the student's architecture"
)
flags.DEFINE_string("teacher", "switch_lm_tiny_8", "sparse preset with the same FLOPs per token")
flags.DEFINE_string("dataset", "default", "text source (see pretrain.py)")
flags.DEFINE_integer("steps", 1000, "training steps of the dense baseline and of the teacher")
flags.DEFINE_integer("distill_steps", None, "training steps of each student (default: --steps)")
flags.DEFINE_integer(
    "steps_per_epoch", None, "evaluation / backup interval (default min(steps, 100))"
)
flags.DEFINE_integer("batch_size", 16, "batch size (all runs)")
flags.DEFINE_integer("sequence_length", 128, "tokens per example")
flags.DEFINE_float("learning_rate", 1e-3, "peak learning rate (all runs)")
flags.DEFINE_integer("warmup_steps", 100, "learning-rate warm-up steps (all runs)")
flags.DEFINE_integer("validation_steps", None, "validation batches (default: whole split)")
flags.DEFINE_multi_string(
    "override", [], "KEY=VALUE model override of every model (dense, teacher, students)"
)
flags.DEFINE_multi_string(
    "teacher_override", [], "KEY=VALUE override of the teacher only (e.g. num_experts=32)"
)
flags.DEFINE_multi_string(
    "mix",
    ["0.25:0.75", "1:0"],
    "HARD:SOFT loss weights of one student run, repeatable (1:0 = labels only)",
)
flags.DEFINE_float("temperature", 1.0, "softmax temperature of the soft loss")
flags.DEFINE_enum("soft_loss", "kl", ["kl", "cross_entropy"], "teacher-matching term")
flags.DEFINE_bool(
    "init_from_teacher", True, "initialise students from the teacher's non-expert weights"
)
flags.DEFINE_enum(
    "expert_init",
    "none",
    ["none", "mean"],
    "student feed-forward at the teacher's sparse layers: as initialised, or mean of experts",
)
flags.DEFINE_float(
    "min_teacher_gain", 0.01, "smallest teacher gain (nats) for which a share is reported"
)
flags.DEFINE_enum(
    "strategy", "auto", ["auto", "cpu", "gpu", "mirrored", "tpu"], "tf.distribute strategy"
)
flags.DEFINE_string("output_dir", "runs/distill", "runs, table, plot")
flags.DEFINE_integer("seed", 0, "seed (all runs)")
flags.DEFINE_integer("verbose", 2, "fit verbosity")

# Pretraining settings that must agree for a stored run to be reused.
_RUN_KEYS = (
    "model",
    "dataset",
    "steps",
    "steps_per_epoch",
    "batch_size",
    "sequence_length",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
    "mixed_precision",
    "seed",
    "model_overrides",
)


class UsageError(Exception):
    """A bad flag or an output directory that holds another configuration."""


# Flags ------------------------------------------------------------------------------


def parse_overrides(items, flag):
    import ast

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--{flag} must be KEY=VALUE, got {item!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def parse_mix(text):
    """`"HARD:SOFT"` -> `(hard, soft)` floats >= 0, not both 0."""
    hard, sep, soft = text.partition(":")
    try:
        if not sep:
            raise ValueError
        hard, soft = float(hard), float(soft)
    except ValueError:
        raise UsageError(f"--mix must be HARD:SOFT (e.g. 0.25:0.75), got {text!r}") from None
    if (
        not (math.isfinite(hard) and math.isfinite(soft))
        or hard < 0
        or soft < 0
        or hard + soft == 0
    ):
        raise UsageError(f"--mix weights must be finite, >= 0 and not both 0, got {text!r}")
    return hard, soft


@dataclasses.dataclass
class Plan:
    dense: object  # PretrainConfig
    teacher: object
    overrides: dict
    mixes: list
    distill_steps: int


def make_plan():
    from tfmoe.models import count_params, get_preset
    from tfmoe.training import PretrainConfig
    from tfmoe.training.pretraining import validate

    overrides = parse_overrides(FLAGS.override, "override")
    teacher_overrides = {**overrides, **parse_overrides(FLAGS.teacher_override, "teacher_override")}
    mixes = [parse_mix(m) for m in FLAGS.mix]
    if not mixes:
        raise UsageError("--mix: give at least one HARD:SOFT")
    if len(set(mixes)) != len(mixes):
        raise UsageError(f"--mix values repeat: {FLAGS.mix}")
    if not FLAGS.temperature > 0 or not math.isfinite(FLAGS.temperature):
        raise UsageError(f"--temperature must be > 0, got {FLAGS.temperature}")
    try:
        kinds = {name: get_preset(name)["kind"] for name in (FLAGS.dense, FLAGS.teacher)}
        if kinds[FLAGS.dense] != kinds[FLAGS.teacher]:
            raise UsageError(
                f"--dense={FLAGS.dense} is a {kinds[FLAGS.dense]} preset but "
                f"--teacher={FLAGS.teacher} a {kinds[FLAGS.teacher]} one"
            )
        from tfmoe.models.param_count import resolved_config

        if resolved_config(FLAGS.dense, **overrides)[1]["num_experts"]:
            raise UsageError(
                f"--dense={FLAGS.dense} has experts: the baseline and student must be dense"
            )
        count_params(FLAGS.teacher, **teacher_overrides)  # unknown override names -> ValueError
        common = dict(
            dataset=FLAGS.dataset,
            steps=FLAGS.steps,
            steps_per_epoch=FLAGS.steps_per_epoch,
            batch_size=FLAGS.batch_size,
            sequence_length=FLAGS.sequence_length,
            learning_rate=FLAGS.learning_rate,
            warmup_steps=FLAGS.warmup_steps,
            validation_steps=FLAGS.validation_steps,
            seed=FLAGS.seed,
            strategy=FLAGS.strategy,
            verbose=FLAGS.verbose,
        )
        dense = validate(
            PretrainConfig(
                model=FLAGS.dense,
                model_overrides=overrides,
                output_dir=os.path.join(FLAGS.output_dir, "dense"),
                **common,
            )
        )
        teacher = validate(
            PretrainConfig(
                model=FLAGS.teacher,
                model_overrides=teacher_overrides,
                output_dir=os.path.join(FLAGS.output_dir, "teacher"),
                **common,
            )
        )
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error).strip().splitlines()[0]) from None
    distill_steps = FLAGS.distill_steps or FLAGS.steps
    if distill_steps <= 0 or distill_steps % dense.steps_per_epoch:
        raise UsageError(
            f"--distill_steps={distill_steps} must be a positive multiple of "
            f"--steps_per_epoch={dense.steps_per_epoch}"
        )
    return Plan(dense, teacher, overrides, mixes, distill_steps)


# Runs ------------------------------------------------------------------------------


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, default=str)
    os.replace(tmp, path)


def _run_settings(config):
    return json.loads(json.dumps({k: getattr(config, k, None) for k in _RUN_KEYS}, default=str))


def pretrained_run(config):
    """Trains (or resumes) `config` unless its output directory holds the finished run."""
    from tfmoe.training import run_pretraining

    out = config.output_dir
    stored = _read_json(os.path.join(out, "model_config.json"))
    if stored is not None:
        settings = {k: stored.get("pretrain_config", {}).get(k) for k in _RUN_KEYS}
        if settings != _run_settings(config):
            diff = sorted(k for k in _RUN_KEYS if settings.get(k) != _run_settings(config)[k])
            raise UsageError(
                f"{out} holds a run with other settings ({', '.join(diff)}): "
                "use another --output_dir"
            )
    summary = _read_json(os.path.join(out, "summary.json"))
    if (
        summary
        and summary.get("step") == config.steps
        and os.path.isfile(os.path.join(out, "model.weights.h5"))
    ):
        print(f"{config.model}: finished run found in {out}, loading it")
        return summary
    print(f"{config.model}: training {config.steps} steps in {out}")
    result = run_pretraining(config)
    return {k: v for k, v in result.items() if k not in ("model_object", "tokenizer", "history")}


def load_model(preset, tokenizer, overrides, weights):
    from tfmoe.training.pretraining import build_model

    model = build_model(preset, tokenizer, **overrides)
    model.load_weights(weights)
    return model


def student_dir(mix):
    hard, soft = mix
    tag = f"student_hard{hard:g}_soft{soft:g}_T{FLAGS.temperature:g}"
    if soft and FLAGS.soft_loss != "kl":
        tag += f"_{FLAGS.soft_loss}"
    tag += "_teacherinit" if FLAGS.init_from_teacher else "_randominit"
    if FLAGS.init_from_teacher and FLAGS.expert_init != "none":
        tag += f"_{FLAGS.expert_init}"
    return os.path.join(FLAGS.output_dir, tag)


def distill_student(plan, mix, tokenizer):
    """Trains one student with `tfmoe.models.Distiller` (resumable); returns its summary."""
    from tfmoe.models import Distiller, init_student_from_teacher
    from tfmoe.training import NonFiniteGuard, TrainingMonitor, backup, prepare_run
    from tfmoe.training.pretraining import build_model

    out = student_dir(mix)
    settings = {
        "dense": _run_settings(plan.dense),
        "teacher": _run_settings(plan.teacher),
        "hard_label_weight": mix[0],
        "soft_label_weight": mix[1],
        "temperature": FLAGS.temperature,
        "soft_loss": FLAGS.soft_loss,
        "init_from_teacher": FLAGS.init_from_teacher,
        "expert_init": FLAGS.expert_init,
        "steps": plan.distill_steps,
    }
    settings = json.loads(json.dumps(settings, default=str))
    summary = _read_json(os.path.join(out, "summary.json"))
    stored = _read_json(os.path.join(out, "settings.json"))
    if stored is not None and stored != settings:
        raise UsageError(
            f"{out} holds a student trained with other settings: use another --output_dir"
        )
    if (
        summary
        and summary.get("step") == plan.distill_steps
        and os.path.isfile(os.path.join(out, "model.weights.h5"))
    ):
        print(f"student {mix[0]:g}:{mix[1]:g}: finished run found in {out}, loading it")
        return summary
    os.makedirs(out, exist_ok=True)
    _write_json(os.path.join(out, "settings.json"), settings)

    # The dense baseline's set-up: its strategy, seed, batches and schedule.
    dense_run = prepare_run(plan.dense, tokenizer)
    with dense_run.strategy.scope():
        teacher = load_model(
            plan.teacher.model,
            tokenizer,
            plan.teacher.model_overrides,
            os.path.join(plan.teacher.output_dir, "model.weights.h5"),
        )
        student = build_model(plan.dense.model, tokenizer, **plan.overrides)
        report = None
        if FLAGS.init_from_teacher:
            report = init_student_from_teacher(student, teacher, expert_init=FLAGS.expert_init)
        distiller = Distiller(
            teacher,
            student,
            hard_label_weight=mix[0],
            soft_label_weight=mix[1],
            temperature=FLAGS.temperature,
            soft_loss=FLAGS.soft_loss,
        )
        distiller.compile(
            optimizer=dense_run.optimizer(plan.distill_steps),
            **dense_run.compile_options(distiller),
        )
    backup_dir = os.path.join(out, "backup")
    resumed_from = backup.restore_latest(distiller, backup_dir)
    monitor = TrainingMonitor(out, None, plan.dense.steps_per_epoch, plot=False)
    callbacks = [NonFiniteGuard(), monitor, backup.EpochBackup(backup_dir)]
    print(f"student {mix[0]:g}:{mix[1]:g}: distilling {plan.distill_steps} steps in {out}")
    start = time.time()
    dense_run.fit(distiller, callbacks, resumed_from=resumed_from, steps=plan.distill_steps)
    student.save_weights(os.path.join(out, "model.weights.h5"))
    records = monitor.records()
    summary = {
        "step": int(distiller.optimizer.iterations.numpy()),
        "train_time_s": sum(r.get("train_time") or 0.0 for r in records),
        "run_wall_s": time.time() - start,
        "init_report": None if report is None else {k: len(v) for k, v in report.items()},
        "last_epoch": records[-1] if records else {},
    }
    _write_json(os.path.join(out, "summary.json"), summary)
    return summary


# Evaluation and report -------------------------------------------------------------


def evaluate_cross_entropy(model, dataset):
    """Token cross-entropy (nats) of `model` on `dataset` (padding excluded) and the token count."""
    import numpy as np
    import tensorflow as tf

    from tfmoe.models import Distiller

    @tf.function
    def step(x, y, w):
        logits = tf.cast(model(x, training=False), tf.float32)
        ce = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        weights = Distiller.token_weights(x, y, w)
        return tf.reduce_sum(ce * weights), tf.reduce_sum(weights)

    total, tokens = 0.0, 0.0
    for x, y, w in dataset:
        s, n = step(x, y, w)
        total += float(s)
        tokens += float(n)
    return total / tokens if tokens else float("nan"), tokens if np.isfinite(tokens) else 0.0


def share_kept(ce_dense, ce_teacher, ce_student):
    """(CE_dense - CE_student) / (CE_dense - CE_teacher)."""
    return (ce_dense - ce_student) / (ce_dense - ce_teacher)


def _fmt_overrides(overrides):
    return ", ".join(f"{k}={v}" for k, v in overrides.items())


def write_report(path, rows, gain, min_gain, command, plan):
    """Markdown table of `rows` (dicts) and the verdict; returns the text."""
    dense, teacher = rows[0], rows[1]
    lines = [f"Command: `{command}`", ""]
    if plan.overrides:
        lines.append(f"Overrides of every model: `{_fmt_overrides(plan.overrides)}`.")
    extra = {k: v for k, v in plan.teacher.model_overrides.items() if plan.overrides.get(k) != v}
    if extra:
        lines.append(f"Teacher-only overrides: `{_fmt_overrides(extra)}`.")
    lines += [
        f"Training: {plan.dense.steps} steps of {plan.dense.batch_size} x {plan.dense.sequence_length} tokens "
        f"(dense baseline, teacher), {plan.distill_steps} steps for each student, same batches, peak lr "
        f"{plan.dense.learning_rate:g}, seed {plan.dense.seed}. Validation: the same "
        f"{dense['val_tokens']:,.0f} tokens for every model.",
        "",
        "| model | params | active params / token | training | val CE (nats) | val perplexity "
        "| share of teacher gain kept |",
        "|---|---|---|---|---|---|---|",
    ]
    meaningful = gain >= min_gain
    for row in rows:
        share = row.get("share")
        share_text = (
            "0% (reference)"
            if row is dense
            else "100% (reference)"
            if row is teacher
            else (f"**{share:.1%}**" if meaningful else "n/a")
        )
        active = f"{row['active_params']:,}" if row.get("active_params") else "?"
        lines.append(
            f"| {row['label']} | {row['params']:,} | {active} | {row['training']} | "
            f"{row['val_ce']:.4f} | {row['val_ppl']:.2f} | {share_text} |"
        )
    lines.append("")
    compression = 1 - dense["params"] / teacher["params"]
    lines.append(
        f"- Teacher gain over the dense baseline: {gain:+.4f} nats "
        f"(perplexity {dense['val_ppl']:.2f} -> {teacher['val_ppl']:.2f}); the student has "
        f"{compression:.0%} fewer parameters than the teacher."
    )
    if meaningful:
        students = rows[2:]
        lines.append(
            f"- Share of the teacher's gain kept by the distilled student "
            f"({students[0]['label']}): **{students[0]['share']:.1%}** "
            "(Switch paper: ~30% at 99% compression)."
        )
    else:
        lines.append(
            f"- **The teacher does not beat the dense baseline** (gain {gain:+.4f} nats < "
            f"{min_gain:g}): there is no gain to keep, so no share is reported."
        )
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        plan = make_plan()
        run(plan)
    except UsageError as error:
        fail(str(error))


def run(plan):
    import numpy as np

    from tfmoe.models import count_active_params
    from tfmoe.training import NonFiniteLossError, StrategyError, prepare_run
    from tfmoe.training.callbacks import read_history
    from tfmoe.training.pretraining import make_tokenizer

    os.makedirs(FLAGS.output_dir, exist_ok=True)
    try:
        summaries = {"dense": pretrained_run(plan.dense), "teacher": pretrained_run(plan.teacher)}
        tokenizer = make_tokenizer(plan.dense.vocabulary)
        students = [(mix, distill_student(plan, mix, tokenizer)) for mix in plan.mixes]
    except NonFiniteLossError as error:
        raise UsageError(f"training stopped: {error}") from None
    except (ValueError, FileNotFoundError, StrategyError) as error:
        raise UsageError(str(error).strip().splitlines()[0]) from None

    # The validation batches of the dense baseline's set-up (seeded as in `run_pretraining`):
    # every model is scored on the batches it was validated on.
    validation = prepare_run(plan.dense, tokenizer).validation
    vocab = tokenizer.vocabulary_size()

    def active(preset, overrides):
        try:
            return int(count_active_params(preset, vocabulary_size=vocab, **overrides))
        except (TypeError, ValueError):
            return None

    rows, curves = [], {}
    entries = [
        (
            "dense",
            f"dense baseline `{plan.dense.model}`",
            plan.dense.model,
            plan.overrides,
            plan.dense.output_dir,
            f"{plan.dense.steps} steps, labels",
        ),
        (
            "teacher",
            f"sparse teacher `{plan.teacher.model}`",
            plan.teacher.model,
            plan.teacher.model_overrides,
            plan.teacher.output_dir,
            f"{plan.teacher.steps} steps, labels",
        ),
    ]
    for mix, _ in students:
        init = "teacher init" if FLAGS.init_from_teacher else "random init"
        if FLAGS.init_from_teacher and FLAGS.expert_init == "mean":
            init += " (expert mean)"
        what = (
            f"labels only ({mix[0]:g} hard)"
            if mix[1] == 0
            else f"distilled ({mix[0]:g} hard / {mix[1]:g} soft, T={FLAGS.temperature:g})"
        )
        entries.append(
            (
                f"student {mix[0]:g}:{mix[1]:g}",
                f"dense student, {init}, {what}",
                plan.dense.model,
                plan.overrides,
                student_dir(mix),
                f"{plan.distill_steps} steps",
            )
        )
    for key, label, preset, overrides, directory, training in entries:
        model = load_model(
            preset, tokenizer, overrides, os.path.join(directory, "model.weights.h5")
        )
        ce, tokens = evaluate_cross_entropy(model, validation)
        rows.append(
            {
                "key": key,
                "label": label,
                "params": int(model.count_params()),
                "active_params": active(preset, overrides),
                "training": training,
                "val_ce": ce,
                "val_ppl": float(np.exp(ce)),
                "val_tokens": tokens,
            }
        )
        history = read_history(os.path.join(directory, "history.jsonl"))
        points = [
            (
                r["step"],
                r.get(
                    "val_cross_entropy",
                    math.log(r["val_perplexity"]) if r.get("val_perplexity") else float("nan"),
                ),
            )
            for r in history
        ]
        if points:
            curves[key] = tuple(zip(*points))
    gain = rows[0]["val_ce"] - rows[1]["val_ce"]
    for row in rows[2:]:
        row["share"] = (
            share_kept(rows[0]["val_ce"], rows[1]["val_ce"], row["val_ce"]) if gain else None
        )
    command = "python experiments/distill.py " + " ".join(sys.argv[1:])
    text = write_report(
        os.path.join(FLAGS.output_dir, "distill.md"),
        rows,
        gain,
        FLAGS.min_teacher_gain,
        command,
        plan,
    )
    _write_json(
        os.path.join(FLAGS.output_dir, "distill.json"),
        {
            "rows": rows,
            "teacher_gain": gain,
            "min_teacher_gain": FLAGS.min_teacher_gain,
            "share_reported": gain >= FLAGS.min_teacher_gain,
            "summaries": summaries,
            "students": [{"mix": list(mix), "summary": s} for mix, s in students],
        },
    )
    if curves:
        from tfmoe.training import plots

        plots.loss_curves_png(
            os.path.join(FLAGS.output_dir, "distill_steps.png"),
            curves,
            xlabel="step",
            ylabel="validation cross-entropy",
            title="dense, sparse teacher, distilled students",
        )
    print(text)


if __name__ == "__main__":
    app.run(main)
