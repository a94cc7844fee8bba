"""Dense vs sparse at equal FLOPs per token: same data, steps, batch, schedule and seeds.

    python experiments/compare.py --models=dense_lm_tiny,switch_lm_tiny_8 --seeds=0,1 \
        --steps=600 --output_dir=runs/compare

Trains every preset of `--models` (the first is the baseline, normally the dense
twin) once per seed of `--seeds` with `tfmoe.training.run_pretraining`, on the same
data in the same order for a given seed, then writes to `--output_dir`:

- `compare.md`: the table (mean over seeds and every seed's value), the steps each
  model needs to reach the baseline's final validation loss (same seed), the
  validation loss at every evaluation, and the wall time per step relative to the
  baseline;
- `compare_steps.png` / `compare_time.png`: validation loss against steps and
  against training wall time (one colour per model, one line per seed);
- `compare_experts.png` when sparse models of one `top_k` (top-1 or top-2) differ in
  their number of experts: final validation loss against experts (the Switch paper's
  Figure 4), with the baseline as a horizontal line;
- `compare.json`: everything above.

Runs live in `--output_dir/MODEL/seed_S`: running the command again resumes
interrupted runs and keeps finished ones, and `--report_only` rebuilds the table and
plots from every finished run there (e.g. after adding a seed or a model).

Validation loss is the token cross-entropy, log(validation perplexity): the
auxiliary router losses are not part of it. "Steps to reach" interpolates linearly
between evaluations (every `--steps_per_epoch` steps).
"""

import json
import math
import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "models",
    ["dense_lm_tiny", "switch_lm_tiny_8"],
    "presets to compare; the first is the baseline (the dense twin)",
)
flags.DEFINE_list(
    "seeds", ["0"], "seeds (model init and data order; each model runs once per seed)"
)
flags.DEFINE_string("dataset", "default", "text source (see pretrain.py)")
flags.DEFINE_integer("steps", 1000, "training steps of each model")
flags.DEFINE_integer("steps_per_epoch", 50, "evaluation interval")
flags.DEFINE_integer("batch_size", 16, "batch size")
flags.DEFINE_integer("sequence_length", 128, "tokens per example")
flags.DEFINE_float("learning_rate", 1e-3, "peak learning rate (same for all)")
flags.DEFINE_integer("warmup_steps", 100, "learning-rate warm-up steps")
flags.DEFINE_integer("validation_steps", None, "validation batches (default: whole split)")
flags.DEFINE_string("output_dir", "runs/compare", "runs, table and plots")
flags.DEFINE_integer("verbose", 2, "fit verbosity")
flags.DEFINE_multi_string("override", [], "KEY=VALUE model override applied to every model")
flags.DEFINE_bool(
    "report_only", False, "rebuild the table and plots from the finished runs in --output_dir"
)


def cross_entropy(record):
    return math.log(record["val_perplexity"])


def steps_to_reach(history, target):
    """First (interpolated) step where the validation cross-entropy reaches `target`; None if never."""
    previous = (0, float("inf"))
    for record in history:
        step, value = record["step"], cross_entropy(record)
        if value <= target:
            s0, v0 = previous
            if math.isfinite(v0) and v0 != value:
                return s0 + (v0 - target) / (v0 - value) * (step - s0)
            return float(step)
        previous = (step, value)
    return None


def step_times(history):
    """Seconds per training step of each epoch after the first (the first includes tracing/compilation)."""
    times = []
    for previous, record in zip([None] + history[:-1], history):
        steps = record["step"] - (previous["step"] if previous else 0)
        times.append(record["train_time"] / steps)
    return times[1:] or times


def summarize(runs, models):
    """Per model: mean / per-seed final loss, steps to reach the baseline, time per step.

    `runs[model][seed]` holds `history`, `params`, `active_params`. Every model is
    compared with the baseline (`models[0]`) of the same seed.
    """
    baseline = models[0]
    rows = {}
    for name in models:
        seeds = sorted(runs[name])
        finals, reach, times = [], [], []
        for seed in seeds:
            history = runs[name][seed]["history"]
            finals.append(cross_entropy(history[-1]))
            times.append(float(np.median(step_times(history))))
            base = runs[baseline].get(seed)
            if base is not None:
                target = cross_entropy(base["history"][-1])
                steps = steps_to_reach(history, target)
                reach.append(None if steps is None else steps / base["history"][-1]["step"])
        base_times = [
            float(np.median(step_times(runs[baseline][s]["history"])))
            for s in seeds
            if s in runs[baseline]
        ]
        any_run = runs[name][seeds[0]]
        rows[name] = {
            "seeds": seeds,
            "final_val_ce": finals,
            "mean_final_val_ce": float(np.mean(finals)),
            "steps_to_reach_fraction": reach,
            "time_per_step": float(np.median(times)),
            "time_ratio": float(np.median(times) / np.median(base_times)) if base_times else None,
            "steps": any_run["history"][-1]["step"],
            "params": any_run["params"],
            "active_params": any_run["active_params"],
            "num_experts": any_run.get("num_experts", 0),
            "top_k": any_run.get("top_k", 1),
        }
    return rows


def _fraction(values):
    shown = ["not reached" if v is None else f"{v:.0%}" for v in values]
    return " / ".join(shown) if shown else "-"


def write_table(path, rows, runs, models, command):
    baseline = models[0]
    lines = [
        f"Command: `{command}`",
        "",
        "| model | params | active params / token | steps | final val loss (CE), mean | per seed | "
        f"steps to reach `{baseline}`'s final loss, per seed | s / step (median) | time / step vs `{baseline}` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in models:
        r = rows[name]
        per_seed = " / ".join(f"{v:.4f}" for v in r["final_val_ce"])
        ratio = "-" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}x"
        lines.append(
            f"| `{name}` | {r['params']:,} | {r['active_params']:,} | {r['steps']} | "
            f"{r['mean_final_val_ce']:.4f} | {per_seed} | {_fraction(r['steps_to_reach_fraction'])} | "
            f"{r['time_per_step']:.3f} | {ratio} |"
        )
    lines += [
        "",
        f"Seeds: {', '.join(map(str, rows[baseline]['seeds']))}. Validation cross-entropy "
        "(mean over seeds) at each evaluation:",
        "",
    ]
    steps = [rec["step"] for rec in next(iter(runs[baseline].values()))["history"]]
    lines.append("| model | " + " | ".join(str(s) for s in steps) + " |")
    lines.append("|---|" + "---|" * len(steps))
    for name in models:
        curves = [[cross_entropy(rec) for rec in run["history"]] for run in runs[name].values()]
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0)
        lines.append(f"| `{name}` | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def write_plots(output_dir, runs, rows, models):
    """The labelled PNGs (see the module docstring); returns their paths."""
    from tfmoe.training import plots

    written = []
    for xkey, png, xlabel in (
        ("step", "compare_steps.png", "training step"),
        ("time", "compare_time.png", "training wall time (s)"),
    ):
        series = {}
        for name in models:
            for seed, run in sorted(runs[name].items()):
                xs = [r["step"] for r in run["history"]]
                if xkey == "time":
                    xs = np.cumsum([r["train_time"] for r in run["history"]]).tolist()
                series.setdefault(name, []).append(
                    (f"seed {seed}", xs, [cross_entropy(r) for r in run["history"]])
                )
        written.append(
            plots.grouped_curves_png(
                os.path.join(output_dir, png),
                series,
                xlabel=xlabel,
                ylabel="validation cross-entropy (nats)",
                title=f"validation loss, equal FLOPs per token ({rows[models[0]]['steps']} steps)",
            )
        )
    # Loss against experts over the seeds every plotted model (and the baseline) has, so
    # that a model with fewer seeds does not move its mean by seed-to-seed variation.
    sparse = [name for name in models[1:] if rows[name]["num_experts"]]
    seeds = set(rows[models[0]]["seeds"]).intersection(*(rows[name]["seeds"] for name in sparse))

    def finals(name):
        return [v for s, v in zip(rows[name]["seeds"], rows[name]["final_val_ce"]) if s in seeds]

    series = {}
    for name in sparse:
        series.setdefault(f"top-{rows[name]['top_k']}", {})[name] = (
            rows[name]["num_experts"],
            finals(name),
        )
    series = {
        label: points
        for label, points in series.items()
        if len({experts for experts, _ in points.values()}) > 1
    }
    if series and seeds:
        written.append(
            plots.experts_scaling_png(
                os.path.join(output_dir, "compare_experts.png"),
                series,
                baseline=(models[0], finals(models[0])),
                title=f"final validation loss after {rows[models[0]]['steps']} steps "
                f"(seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})",
            )
        )
    return written


def load_run(run_dir, name, overrides):
    """The finished run of preset `name` in `run_dir` (None if it has no `summary.json`).

    Returns a dict with `history`, `train_time_s`, `params`, `active_params`,
    `num_experts` and `top_k` (counted from the preset, without building the model).
    """
    from tfmoe.models import count_active_params, count_params
    from tfmoe.models.param_count import resolved_config
    from tfmoe.training.callbacks import read_history

    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(run_dir, "model_config.json")) as f:
            vocabulary_size = json.load(f)["vocabulary_size"]
    except FileNotFoundError:
        return None
    sized = {**overrides, "vocabulary_size": vocabulary_size}
    _, config = resolved_config(name, **sized)
    return {
        "history": read_history(os.path.join(run_dir, "history.jsonl")),
        "train_time_s": summary["train_time_s"],
        "params": count_params(name, **sized),
        "active_params": count_active_params(name, **sized),
        "num_experts": int(config["num_experts"]),
        "top_k": int(config["top_k"]),
    }


def finished_seeds(output_dir, name):
    """Seeds with a `seed_S` run directory under `output_dir/name`."""
    try:
        entries = os.listdir(os.path.join(output_dir, name))
    except FileNotFoundError:
        return []
    return sorted(
        int(e[len("seed_") :]) for e in entries if e.startswith("seed_") and e[5:].isdigit()
    )


def main(argv):
    del argv
    from tfmoe.training import PretrainConfig, run_pretraining

    overrides = parse_overrides(FLAGS.override)
    models = list(FLAGS.models)
    if len(models) < 2:
        raise app.UsageError("--models needs a baseline and at least one model to compare")
    for seed in [int(s) for s in FLAGS.seeds] if not FLAGS.report_only else ():
        for name in models:
            # Finished runs are kept (their backup makes `fit` a no-op); interrupted ones resume.
            run_pretraining(
                PretrainConfig(
                    model=name,
                    dataset=FLAGS.dataset,
                    steps=FLAGS.steps,
                    steps_per_epoch=FLAGS.steps_per_epoch,
                    batch_size=FLAGS.batch_size,
                    sequence_length=FLAGS.sequence_length,
                    learning_rate=FLAGS.learning_rate,
                    warmup_steps=FLAGS.warmup_steps,
                    validation_steps=FLAGS.validation_steps,
                    seed=seed,
                    strategy="auto",
                    verbose=FLAGS.verbose,
                    output_dir=os.path.join(FLAGS.output_dir, name, f"seed_{seed}"),
                    model_overrides=overrides,
                )
            )
    runs = {}
    for name in models:
        seeds = (
            finished_seeds(FLAGS.output_dir, name)
            if FLAGS.report_only
            else [int(s) for s in FLAGS.seeds]
        )
        for seed in seeds:
            run = load_run(os.path.join(FLAGS.output_dir, name, f"seed_{seed}"), name, overrides)
            if run is not None:
                runs.setdefault(name, {})[seed] = run
        if name not in runs:
            raise app.UsageError(f"no finished run of {name} in {FLAGS.output_dir}")
    rows = summarize(runs, models)
    command = "python experiments/compare.py " + " ".join(
        a for a in sys.argv[1:] if a != "--report_only"
    )
    text = write_table(os.path.join(FLAGS.output_dir, "compare.md"), rows, runs, models, command)
    with open(os.path.join(FLAGS.output_dir, "compare.json"), "w") as f:
        json.dump({"rows": rows, "runs": runs}, f, indent=1)
    write_plots(FLAGS.output_dir, runs, rows, models)
    print(text)


def parse_overrides(items):
    import ast

    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


if __name__ == "__main__":
    app.run(main)
