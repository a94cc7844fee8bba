"""Dense vs Switch at equal FLOPs per token: same data, steps, batch and schedule.

    python experiments/compare.py --steps=2000 --output_dir=runs/compare

Trains `--dense` (default `dense_lm_tiny`) and `--switch` (default
`switch_lm_tiny_8`: the same network with every other feed-forward replaced by 8
top-1 experts of the same size, so each token costs the same FLOPs) with
`tfmoe.training.run_pretraining`, then writes `compare.md` (table) and
`compare_steps.png` / `compare_time.png` (validation loss vs steps and vs
training wall time) in `--output_dir`, and prints the table.

Validation loss here is the token cross-entropy, log(validation perplexity): the
auxiliary router losses are not part of it. "Steps to reach" interpolates
linearly between evaluations (every `--steps_per_epoch` steps).
"""

import json
import math
import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dense", "dense_lm_tiny", "dense preset")
flags.DEFINE_string("switch", "switch_lm_tiny_8", "sparse preset with the same FLOPs per token")
flags.DEFINE_string("dataset", "default", "text source (see pretrain.py)")
flags.DEFINE_integer("steps", 1000, "training steps of each model")
flags.DEFINE_integer("steps_per_epoch", 50, "evaluation interval")
flags.DEFINE_integer("batch_size", 16, "batch size")
flags.DEFINE_integer("sequence_length", 128, "tokens per example")
flags.DEFINE_float("learning_rate", 1e-3, "peak learning rate (same for both)")
flags.DEFINE_integer("validation_steps", None, "validation batches (default: whole split)")
flags.DEFINE_string("output_dir", "runs/compare", "runs, table and plots")
flags.DEFINE_integer("seed", 0, "seed (same for both)")
flags.DEFINE_integer("verbose", 2, "fit verbosity")
flags.DEFINE_multi_string("override", [], "KEY=VALUE model override applied to both models")
flags.DEFINE_bool("report_only", False, "rebuild the table and plots from the runs already in --output_dir")


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


def summarize(runs, order):
    dense, switch = order
    target = cross_entropy(runs[dense]["history"][-1])
    rows = {}
    for name in order:
        history = runs[name]["history"]
        steps = history[-1]["step"]
        rows[name] = {
            "final_val_ce": cross_entropy(history[-1]),
            "final_val_ppl": history[-1]["val_perplexity"],
            # Shared 2-core machines are noisy: the median and the least disturbed epoch.
            "time_per_step": float(np.median(step_times(history))),
            "time_per_step_min": float(np.min(step_times(history))),
            "steps": steps,
            "params": runs[name]["params"],
            "active_params": runs[name]["active_params"],
        }
    reach = steps_to_reach(runs[switch]["history"], target)
    return rows, reach


def write_table(path, rows, reach, order, command):
    dense, switch = order
    ratio = rows[switch]["time_per_step"] / rows[dense]["time_per_step"]
    ratio_min = rows[switch]["time_per_step_min"] / rows[dense]["time_per_step_min"]
    lines = [
        f"Command: `{command}`", "",
        "| model | params | active params / token | steps | final val loss (CE) | val perplexity | train s / step (median; min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in order:
        r = rows[name]
        lines.append(f"| `{name}` | {r['params']:,} | {r['active_params']:,} | {r['steps']} | "
                     f"{r['final_val_ce']:.4f} | {r['final_val_ppl']:.2f} | {r['time_per_step']:.3f}; {r['time_per_step_min']:.3f} |")
    total = rows[dense]["steps"]
    reached = (f"{reach:.0f} steps ({reach / total:.0%} of {total})" if reach is not None
               else f"not reached in {total} steps")
    lines += [
        "",
        f"- Steps for `{switch}` to reach `{dense}`'s final validation loss: **{reached}** (target <= 50%).",
        f"- Wall time per step, switch / dense: **{ratio:.2f}x** median, {ratio_min:.2f}x least-disturbed "
        "epochs (target <= 1.3x; per-epoch training time after the first epoch).",
    ]
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def main(argv):
    del argv
    from tfmoe.models import count_active_params
    from tfmoe.training import PretrainConfig, run_pretraining
    from tfmoe.training import plots
    from tfmoe.training.callbacks import read_history
    overrides = parse_overrides(FLAGS.override)
    order = (FLAGS.dense, FLAGS.switch)
    runs = {}
    if FLAGS.report_only:
        with open(os.path.join(FLAGS.output_dir, "compare.json")) as f:
            runs = json.load(f)["runs"]
        for name in order:
            runs[name]["history"] = read_history(os.path.join(FLAGS.output_dir, name, "history.jsonl"))
    for name in order if not FLAGS.report_only else ():
        result = run_pretraining(PretrainConfig(
            model=name, dataset=FLAGS.dataset, steps=FLAGS.steps, steps_per_epoch=FLAGS.steps_per_epoch,
            batch_size=FLAGS.batch_size, sequence_length=FLAGS.sequence_length,
            learning_rate=FLAGS.learning_rate, validation_steps=FLAGS.validation_steps, seed=FLAGS.seed,
            strategy="auto", verbose=FLAGS.verbose,
            output_dir=os.path.join(FLAGS.output_dir, name), model_overrides=overrides))
        model = result["model_object"]
        runs[name] = {"history": result["history"], "train_time_s": result["train_time_s"],
                      "params": int(model.count_params()),
                      "active_params": _active(name, model, count_active_params, overrides)}
    rows, reach = summarize(runs, order)
    command = "python experiments/compare.py " + " ".join(a for a in sys.argv[1:] if a != "--report_only")
    text = write_table(os.path.join(FLAGS.output_dir, "compare.md"), rows, reach, order, command)
    with open(os.path.join(FLAGS.output_dir, "compare.json"), "w") as f:
        json.dump({"rows": rows, "steps_to_reach": reach, "runs": runs}, f, indent=1)
    for xkey, png in (("step", "compare_steps.png"), ("time", "compare_time.png")):
        curves = {}
        for name in order:
            history = runs[name]["history"]
            xs = [r["step"] for r in history]
            if xkey == "time":
                xs, total = [], 0.0
                for r in history:
                    total += r["train_time"]
                    xs.append(total)
            curves[name] = (xs, [cross_entropy(r) for r in history])
        plots.loss_curves_png(os.path.join(FLAGS.output_dir, png), curves,
                              xlabel="step" if xkey == "step" else "training wall time (s)",
                              ylabel="validation cross-entropy", title="dense vs switch, equal FLOPs/token")
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


def _active(name, model, count_active_params, overrides):
    try:
        return int(count_active_params(name, vocabulary_size=model.vocabulary_size,
                                       **{k: v for k, v in overrides.items()}))
    except TypeError:
        return int(count_active_params(name))


if __name__ == "__main__":
    app.run(main)
