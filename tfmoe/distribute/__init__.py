"""Distribution: strategies, clusters, TPU readiness and expert parallelism.

- `configure(strategy="auto", per_replica_batch_size=...)` -> `DistributionSetup`: resolves
  the strategy (TPU via `TPUClusterResolver`, GPUs mirrored, `MultiWorkerMirroredStrategy`
  from `TF_CONFIG`, else CPU) and sets the global batch, mixed precision and
  `steps_per_execution` (`tfmoe.distribute.runtime`).
- `resolve_strategy(name)`, `split_cpu(n)`, `check_batch_size` (`tfmoe.distribute.strategy`).
- `tf_config`, `read_tf_config`, `is_chief`, `worker_output_dir`, `free_ports`: multi-worker clusters
  (`tfmoe.distribute.cluster`).
- `assert_static_shapes(dataset)`: no dynamic shapes reach a TPU (`tfmoe.distribute.static_shapes`).
- `ExpertParallelMoe`, `expert_mesh`: experts sharded over devices with DTensor
  (`tfmoe.distribute.expert_parallel`).

The design (all-to-all dispatch, capacity per device, memory and communication estimates)
is in `docs/scaling.md`.
"""

from tfmoe.distribute.cluster import (
    free_ports,
    is_chief,
    read_tf_config,
    task_info,
    tf_config,
    worker_output_dir,
)
from tfmoe.distribute.expert_parallel import ExpertParallelMoe, expert_mesh
from tfmoe.distribute.runtime import KINDS, PRECISIONS, DistributionSetup, configure, strategy_kind
from tfmoe.distribute.static_shapes import (
    assert_static_shapes,
    dynamic_dimensions,
    dynamic_hlo_shapes,
)
from tfmoe.distribute.strategy import (
    STRATEGIES,
    StrategyError,
    check_batch_size,
    resolve_strategy,
    split_cpu,
)

__all__ = [
    "KINDS",
    "PRECISIONS",
    "STRATEGIES",
    "DistributionSetup",
    "ExpertParallelMoe",
    "StrategyError",
    "assert_static_shapes",
    "check_batch_size",
    "configure",
    "dynamic_dimensions",
    "dynamic_hlo_shapes",
    "expert_mesh",
    "free_ports",
    "is_chief",
    "read_tf_config",
    "resolve_strategy",
    "split_cpu",
    "strategy_kind",
    "task_info",
    "tf_config",
    "worker_output_dir",
]
