"""Training utilities behind `experiments/` and `make demo`.

- `resolve_strategy`: TPU / mirrored GPUs / CPU auto-detection (re-exported from `tfmoe.distribute`).
- `TrainingMonitor`, `NonFiniteGuard`: history, routing summaries for TensorBoard,
  PNG plots, NaN handling (`tfmoe.training.callbacks`).
- `PretrainConfig`, `run_pretraining`: `model.fit` pre-training, resumable
  (`tfmoe.training.pretraining`).
- `prepare_run`, `RunSetup`: a config's strategy, precision, seed, tokenizer, batches,
  optimizer and `fit` call, for other trainings on the same set-up (distillation;
  `tfmoe.training.run_setup`).
- `freeze_routers`: sparse fine-tuning with fixed routing
  (`tfmoe.training.sparse_finetuning`).
- `backup`: atomic epoch backups, resume, run-directory lock and config check
  (`tfmoe.training.backup`).
"""

from tfmoe.distribute.strategy import (
    STRATEGIES,
    StrategyError,
    check_batch_size,
    resolve_strategy,
    split_cpu,
)
from tfmoe.training import backup
from tfmoe.training.callbacks import (
    NonFiniteGuard,
    NonFiniteLossError,
    TrainingMonitor,
    expert_load,
    moe_layers,
)
from tfmoe.training.pretraining import PretrainConfig, format_summary, run_pretraining
from tfmoe.training.run_setup import RunSetup, prepare_run
from tfmoe.training.sparse_finetuning import freeze_routers

__all__ = [
    "STRATEGIES",
    "NonFiniteGuard",
    "NonFiniteLossError",
    "PretrainConfig",
    "RunSetup",
    "StrategyError",
    "TrainingMonitor",
    "backup",
    "check_batch_size",
    "expert_load",
    "format_summary",
    "freeze_routers",
    "moe_layers",
    "prepare_run",
    "resolve_strategy",
    "run_pretraining",
    "split_cpu",
]
