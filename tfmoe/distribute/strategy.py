"""`tf.distribute` strategy resolution for the experiment scripts.

`resolve_strategy("auto")` picks, in order: `MultiWorkerMirroredStrategy` when
`TF_CONFIG` describes a cluster, a TPU if a `TPUClusterResolver` finds one, all local GPUs (`MirroredStrategy`) if there is more than one, the
single GPU, else the CPU (default strategy).
"""

from __future__ import annotations

import os
import warnings

import tensorflow as tf

from tfmoe.distribute.cluster import read_tf_config

STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "tpu", "multi_worker")


class StrategyError(ValueError):
    """A strategy that cannot be built here (one-line message)."""


def split_cpu(num_devices: int) -> None:
    """Splits the (first) physical CPU into `num_devices` logical devices.

    Lets `MirroredStrategy` run with several replicas on a CPU-only machine
    (tests, debugging). Must run before TensorFlow initialises its devices;
    silently does nothing afterwards.
    """
    if num_devices <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
        )
    except RuntimeError:
        pass


def _default_tpu_address() -> str:
    """`""` (the resolver's own discovery: `TPU_NAME`, Colab's `COLAB_TPU_ADDR`) or `"local"`.

    On a TPU VM (Colab's TPU runtimes are TPU VMs) the chips are local devices
    (`/dev/accel*`, `/dev/vfio`) and `TPUClusterResolver(tpu="")` fails with "Please provide
    a TPU Name"; `tpu="local"` is the documented address there.
    """
    if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR"):
        return ""
    return "local" if os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0") else ""


def _tpu_strategy(tpu_address: str | None = None, required: bool = True):
    address = tpu_address or _default_tpu_address()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        if required:
            first = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            raise StrategyError(f"--strategy=tpu: no TPU found ({first})") from None
        warnings.warn(
            f"a TPU seems attached but could not be initialised ({error}); falling back to GPU/CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return tf.distribute.TPUStrategy(resolver)


def resolve_strategy(
    name: str = "auto", *, tpu_address: str | None = None
) -> tf.distribute.Strategy:
    """Returns the `tf.distribute.Strategy` for `name` (one of `STRATEGIES`).

    - "auto": TPU if found, else all GPUs mirrored (one GPU: default strategy on it), else CPU.
    - "cpu": the default strategy (single device; GPUs are not used for compute placement).
    - "gpu": the default strategy, requiring a GPU.
    - "mirrored": `MirroredStrategy` over all GPUs, or over all logical CPUs when there is no GPU.
    - "tpu": `TPUStrategy` (fails if no TPU is found).
    - "multi_worker": `MultiWorkerMirroredStrategy` (cluster from `TF_CONFIG`). "auto" picks it
      too when `TF_CONFIG` lists more than one worker. It must be created before any other
      TensorFlow call of the program.

    Raises:
        StrategyError: unknown name, or the hardware is missing.
    """
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multi_worker" or (name == "auto" and _multi_worker_cluster()):
        # Before anything lists devices: collective ops must be configured at start-up.
        return _multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        tpu = _tpu_strategy(tpu_address, required=False) if _tpu_likely(tpu_address) else None
        if tpu is not None:
            return tpu
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0") if gpus else tf.distribute.get_strategy()
    if name == "gpu":
        if not gpus:
            raise StrategyError("--strategy=gpu: no GPU found")
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return _tpu_strategy(tpu_address, required=True)


def _multi_worker_cluster() -> bool:
    """Whether `TF_CONFIG` describes a cluster of more than one task."""
    try:
        cluster = read_tf_config().get("cluster", {})
    except ValueError as error:
        raise StrategyError(str(error)) from None
    return sum(len(tasks) for name, tasks in cluster.items() if name in ("chief", "worker")) > 1


def _multi_worker_strategy():
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise StrategyError(
            f"--strategy=multi_worker: {error} (create the strategy before any other TensorFlow "
            "call of the program, e.g. first thing in main())"
        ) from None


def _tpu_likely(tpu_address: str | None) -> bool:
    """Cheap check before trying a TPU resolver (which can hang off-cloud)."""
    if tpu_address:
        return True
    if (
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or os.environ.get("TPU_ACCELERATOR_TYPE")
    ):
        return True
    return os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")


def check_batch_size(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """Raises `ValueError` unless `batch_size` splits evenly across the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"--batch_size={batch_size} is not divisible by the {replicas} replicas of the strategy"
        )
