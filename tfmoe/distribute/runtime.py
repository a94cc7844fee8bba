"""One call that sets up a training run for the hardware at hand.

```python
setup = tfmoe.distribute.configure(strategy="auto", per_replica_batch_size=8)
with setup.strategy.scope():
    model = tfmoe.models.SwitchDecoderLM.from_preset("switch_lm_tiny_8", dispatch=setup.dispatch)
    model.compile(..., steps_per_execution=setup.steps_per_execution, jit_compile=setup.jit_compile)
model.fit(dataset.batch(setup.global_batch_size, drop_remainder=True), ...)
```

What it decides, by the kind of strategy it resolved:

| kind | mixed precision ("auto") | steps_per_execution ("auto") | dispatch | jit_compile |
|---|---|---|---|---|
| `tpu` | `mixed_bfloat16` | 32 | `einsum` (static one-hot) | True (TPUs always compile) |
| `gpu` (one GPU) | `mixed_bfloat16` on compute capability >= 8.0, else `float32` | 1 | `gather` | True |
| `mirrored` (GPUs or logical CPUs) | as `gpu` / `float32` on CPUs | 1 (> 1 fails in `fit` on CPUs with Keras 3) | `gather` | False |
| `multi_worker` | `float32` | 1 | `gather` | False |
| `cpu` | `float32` | 1 | `gather` | True (`jit_compile_for(model)`: False for models with dropout or jitter, slow under XLA on CPU) |

`configure` sets the global Keras dtype policy (it is process-wide, like
`keras.mixed_precision.set_global_policy`). The global batch is
`per_replica_batch_size * num_replicas` (or `global_batch_size`, which must split evenly).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tfmoe.distribute.strategy import resolve_strategy
from tfmoe.private_apis import sublayers

KINDS = ("tpu", "gpu", "mirrored", "multi_worker", "cpu")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TPU_STEPS_PER_EXECUTION = 32


@dataclasses.dataclass(frozen=True)
class DistributionSetup:
    """What `configure` decided. Pass these on to the model, `compile` and the pipeline.

    Attributes:
      strategy: the `tf.distribute.Strategy`; build and compile under `strategy.scope()`.
      kind: one of `KINDS`.
      num_replicas: replicas in sync (all workers together).
      global_batch_size: examples per step over all replicas (batch the dataset with it).
      per_replica_batch_size: `global_batch_size // num_replicas`.
      mixed_precision: the global Keras dtype policy that was set.
      steps_per_execution: for `model.compile`.
      dispatch: expert dispatch mode for the MoE layers (`"einsum"` on TPU).
      jit_compile: for `model.compile`.
    """

    strategy: tf.distribute.Strategy
    kind: str
    num_replicas: int
    global_batch_size: int
    per_replica_batch_size: int
    mixed_precision: str
    steps_per_execution: int
    dispatch: str
    jit_compile: bool

    def jit_compile_for(self, model) -> bool:
        """`jit_compile` for this model: off on a CPU when the model draws random numbers.

        XLA's CPU random-number kernels are slow: a `switch_tiny_8` classifier step with
        dropout 0.1 took about 3 s with XLA against 0.12 s without (batch 32 x 64, 2 cores),
        while without dropout XLA halves the step time. Dropout, expert dropout and router
        jitter noise all draw random numbers while training.
        """
        if self.kind == "cpu" and self.jit_compile and _draws_random_numbers(model):
            return False
        return self.jit_compile

    def describe(self) -> str:
        """One line for logs: `kind x replicas, batch, precision, ...`."""
        return (
            f"{self.kind} ({type(self.strategy).__name__}, {self.num_replicas} replica"
            f"{'s' if self.num_replicas != 1 else ''}): global batch {self.global_batch_size} "
            f"({self.per_replica_batch_size} per replica), {self.mixed_precision}, "
            f"steps_per_execution {self.steps_per_execution}, dispatch {self.dispatch}, "
            f"jit_compile {self.jit_compile}"
        )


def _draws_random_numbers(model) -> bool:
    for layer in sublayers(model, include_self=True):
        if isinstance(layer, keras.layers.Dropout) and layer.rate > 0:
            return True
        if getattr(layer, "jitter_noise", 0.0) > 0:
            return True
    return False


def strategy_kind(strategy: tf.distribute.Strategy) -> str:
    """Classifies a strategy into one of `KINDS`."""
    name = type(strategy).__name__
    if "TPU" in name:
        return "tpu"
    if "MultiWorker" in name or "CollectiveAll" in name:
        return "multi_worker"
    if "Mirrored" in name:
        return "mirrored"
    if "OneDevice" in name:
        return "gpu" if "GPU" in strategy.extended.worker_devices[0].upper() else "cpu"
    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"


def _gpu_supports_bfloat16() -> bool:
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if not capability or tuple(capability) < (8, 0):
            return False
    return bool(tf.config.list_physical_devices("GPU"))


def _on_gpus(strategy: tf.distribute.Strategy) -> bool:
    return any("GPU" in d.upper() for d in strategy.extended.worker_devices)


def _auto_precision(kind: str, strategy: tf.distribute.Strategy) -> str:
    if kind == "tpu":
        return "mixed_bfloat16"
    on_gpu = kind == "gpu" or (kind == "mirrored" and _on_gpus(strategy))
    return "mixed_bfloat16" if on_gpu and _gpu_supports_bfloat16() else "float32"


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def configure(
    strategy: str | tf.distribute.Strategy = "auto",
    *,
    per_replica_batch_size: int | None = None,
    global_batch_size: int | None = None,
    mixed_precision: str = "auto",
    steps_per_execution: int | str = "auto",
    tpu_address: str | None = None,
) -> DistributionSetup:
    """Resolves the strategy and sets global batch, precision and steps per execution.

    Args:
      strategy: a name of `tfmoe.distribute.STRATEGIES` or a strategy object.
      per_replica_batch_size: examples per replica per step (exclusive with
        `global_batch_size`; default 8 per replica).
      global_batch_size: examples per step over all replicas; must be divisible by
        the number of replicas.
      mixed_precision: `"auto"` (see module table) or a Keras policy name in `PRECISIONS`.
      steps_per_execution: `"auto"` or a positive int.
      tpu_address: TPU name / grpc address for `TPUClusterResolver`.

    Returns:
      `DistributionSetup`.

    Raises:
      ValueError: bad argument, or a batch that does not split evenly.
      tfmoe.distribute.StrategyError: the strategy cannot be built here.
    """
    if per_replica_batch_size is not None and global_batch_size is not None:
        raise ValueError("pass `per_replica_batch_size` or `global_batch_size`, not both")
    for name, value in (
        ("per_replica_batch_size", per_replica_batch_size),
        ("global_batch_size", global_batch_size),
    ):
        if value is not None:
            _positive_int(name, value)
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"`mixed_precision` must be one of {PRECISIONS}, got {mixed_precision!r}")
    if steps_per_execution != "auto":
        _positive_int("steps_per_execution", steps_per_execution)

    if isinstance(strategy, str):
        strategy = resolve_strategy(strategy, tpu_address=tpu_address)
    kind = strategy_kind(strategy)
    replicas = strategy.num_replicas_in_sync
    if global_batch_size is None:
        global_batch_size = (per_replica_batch_size or 8) * replicas
    elif global_batch_size % replicas:
        raise ValueError(
            f"`global_batch_size`={global_batch_size} is not divisible by the "
            f"{replicas} replicas of the strategy"
        )
    if steps_per_execution == "auto":
        steps_per_execution = TPU_STEPS_PER_EXECUTION if kind == "tpu" else 1
    elif steps_per_execution > 1 and kind == "mirrored" and not _on_gpus(strategy):
        raise ValueError(
            f"`steps_per_execution`={steps_per_execution} fails in Keras `fit` under "
            f"{type(strategy).__name__} on CPU devices; use 1"
        )
    policy = _auto_precision(kind, strategy) if mixed_precision == "auto" else mixed_precision
    keras.mixed_precision.set_global_policy(policy)
    return DistributionSetup(
        strategy=strategy,
        kind=kind,
        num_replicas=replicas,
        global_batch_size=global_batch_size,
        per_replica_batch_size=global_batch_size // replicas,
        mixed_precision=policy,
        steps_per_execution=steps_per_execution,
        dispatch="einsum" if kind == "tpu" else "gather",
        jit_compile=kind in ("tpu", "gpu", "cpu"),
    )
