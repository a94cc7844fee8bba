"""Keras callbacks for MoE training runs.

- `TrainingMonitor`: per-epoch history (losses, perplexity, time, expert load) in
  `history.jsonl`, per-layer routing summaries for TensorBoard (per-expert load
  scalars, a load histogram and a `[layers, experts]` heatmap image), and the PNG
  plots at the end of training. Survives resumed runs (the history
  file is appended to; re-run epochs replace their old record).
- `NonFiniteGuard`: Keras' `TerminateOnNaN(raise_error=True)` with a clear
  `NonFiniteLossError` on the first NaN/Inf loss (before any checkpoint of that
  state is written); also refuses to let an epoch end with non-finite weights.
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfmoe.private_apis import sublayers
from tfmoe.training import plots

HISTORY_FILE = "history.jsonl"
LOSS_PLOT = "loss_curves.png"
HEATMAP_PLOT = "expert_load_heatmap.png"


def moe_layers(model: keras.Model) -> list:
    """The MoE feed-forward layers of `model` (those with a `routing_tracker`), in order."""
    return [layer for layer in sublayers(model) if hasattr(layer, "routing_tracker")]


def expert_load(model: keras.Model) -> dict[str, np.ndarray]:
    """`{routing metrics name: token fraction per expert}` accumulated since the metrics
    were last reset (a stack names them `{stack}_block_{i}_feed_forward`)."""
    loads = {}
    for layer in moe_layers(model):
        tracker = layer.routing_tracker
        counts = np.asarray(keras.ops.convert_to_numpy(tracker.assignments), float)
        total = counts.sum()
        loads[tracker.name] = counts / total if total > 0 else counts
    return loads


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or weights."""


class NonFiniteGuard(keras.callbacks.TerminateOnNaN):
    """Keras' `TerminateOnNaN(raise_error=True)`, raising `NonFiniteLossError`, plus a weight check.

    Put it first in the callback list: raising inside `on_train_batch_end` ends
    `fit` before `on_epoch_end`, so `ModelCheckpoint`/`EpochBackup` never save the
    broken state. The loss of a step is computed before that step's update, so the
    last update of an epoch could still make weights non-finite unseen: at each
    epoch end every trainable weight is checked on its device (one boolean comes
    back to the host) before the backups run.
    """

    def __init__(self):
        super().__init__(raise_error=True)
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        try:
            super().on_train_batch_end(batch, logs)
        except RuntimeError:
            loss = float(logs["loss"])
            raise NonFiniteLossError(
                f"loss became {loss} at step {self._iterations()}: training stopped, "
                "no checkpoint written for this state (lower the learning rate, or use float32)"
            ) from None

    def on_epoch_end(self, epoch, logs=None):
        weights = self.model.trainable_weights
        if bool(_all_finite(weights)):
            return
        for weight in weights:
            if not bool(_all_finite([weight])):
                raise NonFiniteLossError(
                    f"weight {weight.path} is not finite after epoch {epoch + 1}: training stopped, "
                    "no checkpoint written for this state"
                )

    def _iterations(self):
        try:
            return int(self.model.optimizer.iterations.numpy())
        except Exception:  # noqa: BLE001
            return self._step


def _all_finite(weights):
    """Scalar bool tensor: whether every element of `weights` is finite (computed where they live)."""
    return tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(w))) for w in weights]
    )


class TrainingMonitor(keras.callbacks.Callback):
    """History file, routing summaries for TensorBoard and plots of one run.

    Args:
      output_dir: where `history.jsonl` and the PNG plots go.
      log_dir: TensorBoard log directory (routing summaries go to `log_dir/routing`);
        None disables them.
      steps_per_epoch: to turn epochs into steps.
      plot: write the PNGs at the end of training.
    """

    def __init__(self, output_dir, log_dir=None, steps_per_epoch=1, plot=True):
        super().__init__()
        self.output_dir = os.fspath(output_dir)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.steps_per_epoch = int(steps_per_epoch)
        self.plot = plot
        self.history_path = os.path.join(self.output_dir, HISTORY_FILE)
        self._writer = None
        self._epoch_start = None
        self._train_time = None
        self._load = None

    # History file ----------------------------------------------------------------

    def records(self):
        return read_history(self.history_path)

    def on_train_begin(self, logs=None):
        os.makedirs(self.output_dir, exist_ok=True)
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "routing"))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._train_time = None
        self._load = None

    def _end_of_training_part(self):
        if self._train_time is None and self._epoch_start is not None:
            self._train_time = time.perf_counter() - self._epoch_start
            self._load = expert_load(self.model)

    def on_test_begin(self, logs=None):
        # Validation inside fit: the routing metrics still hold this epoch's training counts.
        if self._epoch_start is not None:
            self._end_of_training_part()

    def on_epoch_end(self, epoch, logs=None):
        self._end_of_training_part()
        logs = dict(logs or {})
        step = (epoch + 1) * self.steps_per_epoch
        record = {
            "epoch": epoch + 1,
            "step": step,
            "train_time": self._train_time,
            "epoch_time": time.perf_counter() - self._epoch_start,
            "time": time.time(),
            **{k: float(v) for k, v in logs.items() if np.ndim(v) == 0},
            "expert_load": {k: [float(x) for x in v] for k, v in (self._load or {}).items()},
        }
        records = [r for r in self.records() if r["epoch"] < epoch + 1] + [record]
        tmp = self.history_path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        os.replace(tmp, self.history_path)
        self._write_routing_summaries(step)
        self._epoch_start = None

    def _write_routing_summaries(self, step):
        if self._writer is None or not self._load:
            return
        names = list(self._load)
        matrix = np.stack([self._load[n] for n in names])
        with self._writer.as_default(step=step):
            for name, fractions in self._load.items():
                experts = len(fractions)
                for i, value in enumerate(fractions):
                    tf.summary.scalar(f"{name}/expert_{i}_load", value * experts)
                # One sample per token share: the spread of expert loads.
                tf.summary.histogram(f"{name}/expert_load", fractions * experts)
            image = matrix / max(matrix.max(), 1e-9)
            image = np.repeat(np.repeat(image, 16, axis=0), 16, axis=1)
            tf.summary.image("expert_load_heatmap", image[None, :, :, None].astype(np.float32))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
        if self.plot:
            write_run_plots(self.output_dir)


def read_history(path):
    """The records of a `history.jsonl` file (empty list if missing)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_run_plots(output_dir):
    """Writes `loss_curves.png` and `expert_load_heatmap.png` from `output_dir/history.jsonl`."""
    records = read_history(os.path.join(output_dir, HISTORY_FILE))
    if not records:
        return []
    steps = [r["step"] for r in records]
    curves = {"train loss": (steps, [r.get("loss", float("nan")) for r in records])}
    if any("val_loss" in r for r in records):
        curves["validation loss"] = (steps, [r.get("val_loss", float("nan")) for r in records])
    written = [plots.loss_curves_png(os.path.join(output_dir, LOSS_PLOT), curves, title="loss")]
    load = records[-1].get("expert_load") or {}
    if load:
        names = list(load)
        written.append(
            plots.expert_load_heatmap_png(
                os.path.join(output_dir, HEATMAP_PLOT),
                names,
                np.array([load[n] for n in names]),
                title=f"token share per expert, step {records[-1]['step']} (uniform = {1 / len(load[names[0]]):.3f})",
            )
        )
    return written
