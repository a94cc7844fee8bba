"""Multi-worker clusters: `TF_CONFIG` and where each worker writes.

`MultiWorkerMirroredStrategy` reads the cluster from the `TF_CONFIG` environment
variable, which must be set before the strategy is created:

```python
os.environ["TF_CONFIG"] = tfmoe.distribute.tf_config(["host1:12345", "host2:12345"], index=0)
setup = tfmoe.distribute.configure("multi_worker", per_replica_batch_size=8)
```

Every worker runs the same script; only the chief (worker 0) should write the
outputs users keep. The others must still save (saving is collective), to a
directory of their own: `worker_output_dir`.
"""

from __future__ import annotations

import json
import os
import socket


def tf_config(workers: list[str], index: int, *, task_type: str = "worker") -> str:
    """The `TF_CONFIG` JSON string for task `index` of a cluster of `workers` (`host:port`)."""
    if not workers:
        raise ValueError("`workers` must list at least one host:port")
    for address in workers:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"`workers` entries must be 'host:port', got {address!r}")
    if not 0 <= index < len(workers):
        raise ValueError(f"`index` must be in [0, {len(workers)}), got {index}")
    return json.dumps(
        {"cluster": {task_type: list(workers)}, "task": {"type": task_type, "index": int(index)}}
    )


def free_ports(count: int, host: str = "localhost") -> list[int]:
    """`count` distinct TCP ports free on `host` now (for local test clusters)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def read_tf_config() -> dict:
    """The parsed `TF_CONFIG` environment variable (`{}` when unset).

    Raises:
      ValueError: `TF_CONFIG` is set but is not a JSON object.
    """
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        raise ValueError("TF_CONFIG is not valid JSON") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    return config


def _task_of(config: dict) -> tuple[str | None, int]:
    task = config.get("task") or {}
    return task.get("type"), int(task.get("index", 0))


def task_info() -> tuple[str | None, int]:
    """`(task_type, task_index)` from `TF_CONFIG`; `(None, 0)` without one."""
    return _task_of(read_tf_config())


def is_chief() -> bool:
    """True for the process that writes outputs: no cluster, the chief, or worker 0 without a chief."""
    return _is_chief(read_tf_config())


def _is_chief(config: dict) -> bool:
    task_type, index = _task_of(config)
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and index == 0 and "chief" not in config.get("cluster", {})


def worker_output_dir(output_dir: str) -> str:
    """`output_dir` on the chief; `output_dir/workers/<type>_<index>` on the other workers."""
    config = read_tf_config()
    if _is_chief(config):
        return output_dir
    task_type, index = _task_of(config)
    return os.path.join(output_dir, "workers", f"{task_type}_{index}")
