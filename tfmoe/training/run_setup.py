"""The set-up of a `PretrainConfig` run, shared by `run_pretraining` and distillation.

```python
run = prepare_run(validate(config))      # strategy, precision, seed, tokenizer, batches
with run.strategy.scope():
    model = build_model(config.model, run.tokenizer)
    model.compile(optimizer=run.optimizer(), loss=..., **run.compile_options(model))
run.fit(model, callbacks, resumed_from=epoch)
```

Every run trained through it sees the same batches in the same order for the same
config (data, batch size, sequence length, seed), which is what lets a distilled student
train on the batches its teacher and dense baseline were trained on.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tfmoe.distribute.runtime import DistributionSetup, configure
from tfmoe.distribute.strategy import check_batch_size, resolve_strategy
from tfmoe.training import data as training_data
from tfmoe.training.pretraining import (
    PretrainConfig,
    count_batches,
    make_optimizer,
    make_tokenizer,
    skip_consumed,
)


@dataclasses.dataclass
class RunSetup:
    """What a run needs besides its model, resolved from a validated `PretrainConfig`.

    Attributes:
      config: the config (`steps_per_epoch` and `vocabulary` filled in by `validate`).
      strategy: the `tf.distribute` strategy to build the model under.
      distribution: precision, steps per execution and XLA settings for `strategy`.
      kind: "causal_lm" or "seq2seq" (the preset's kind).
      tokenizer: `WordpieceTokenizer` of `config.vocabulary`.
      train: endless training batches `(features, labels, sample_weight)`, static shapes
        (causal LM: `token_ids` / `padding_mask` / labels / weights all
        `[batch_size, sequence_length]`; seq2seq: span corruption's encoder / decoder).
      validation: the first `validation_steps` validation batches, cached.
      validation_steps: number of batches in `validation` (>= 1).
    """

    config: PretrainConfig
    strategy: tf.distribute.Strategy
    distribution: DistributionSetup
    kind: str
    tokenizer: object
    train: tf.data.Dataset
    validation: tf.data.Dataset
    validation_steps: int

    def optimizer(self, steps: int | None = None) -> keras.optimizers.Optimizer:
        """AdamW, the config's warm-up then cosine decay over `steps` (default `config.steps`)."""
        config = self.config
        return make_optimizer(
            config.learning_rate, steps or config.steps, config.warmup_steps, config.weight_decay
        )

    def compile_options(self, model) -> dict:
        """`jit_compile` and `steps_per_execution` for `model.compile`."""
        jit = self.config.jit_compile
        return {
            "jit_compile": self.distribution.jit_compile_for(model) if jit == "auto" else jit,
            "steps_per_execution": self.distribution.steps_per_execution,
        }

    def fit(self, model, callbacks, *, resumed_from: int = 0, steps: int | None = None):
        """`model.fit` for `steps` (default `config.steps`), from epoch `resumed_from`.

        Skips the batches of the epochs already trained, so a resumed run sees the batches
        an uninterrupted one would have; validates on `validation` after every epoch of
        `config.steps_per_epoch` steps. Returns the `History`.
        """
        config = self.config
        spe = config.steps_per_epoch
        return model.fit(
            skip_consumed(self.train, resumed_from, spe),
            epochs=(steps or config.steps) // spe,
            initial_epoch=resumed_from,
            steps_per_epoch=spe,
            validation_data=self.validation,
            validation_steps=self.validation_steps,
            callbacks=callbacks,
            verbose=config.verbose,
        )


def prepare_distribution(
    strategy_name: str, *, batch_size: int, mixed_precision: bool, seed: int
) -> tuple[tf.distribute.Strategy, DistributionSetup]:
    """The strategy, its distribution settings and the global seed, in that order.

    The strategy comes first (`MultiWorkerMirroredStrategy` must exist before any other
    TensorFlow call), then the seed, so that what is built next is the same in every run.

    Args:
      strategy_name: a name of `tfmoe.distribute.STRATEGIES` ("auto", "mirrored", ...).
      batch_size: examples per step over all replicas.
      mixed_precision: True for `mixed_bfloat16`; False lets "auto" pick (bfloat16 on TPUs
        and recent GPUs, float32 elsewhere).
      seed: the global seed (`keras.utils.set_random_seed`).

    Returns:
      `(strategy, distribution)`: precision, steps per execution and XLA settings.

    Raises:
      StrategyError, ValueError: no such strategy, or a batch size the replicas cannot split.
    """
    strategy = resolve_strategy(strategy_name)
    check_batch_size(batch_size, strategy)
    distribution = configure(
        strategy,
        global_batch_size=batch_size,
        mixed_precision="mixed_bfloat16" if mixed_precision else "auto",
    )
    keras.utils.set_random_seed(seed)
    return strategy, distribution


def prepare_run(config: PretrainConfig, tokenizer=None) -> RunSetup:
    """Strategy, precision, seed, tokenizer and datasets of `config` (validated), in that order.

    See `prepare_distribution` for the order: the seed is set before the data shuffles and
    the model built next, so they are the same in every run of the config.

    Args:
      config: a `PretrainConfig` passed through `pretraining.validate`.
      tokenizer: a tokenizer to reuse; default `make_tokenizer(config.vocabulary)`.

    Raises:
      StrategyError, ValueError: no such strategy, a batch size the replicas cannot
        split, or a split of `config.dataset` too small for one batch.
    """
    from tfmoe.models import get_preset

    strategy, distribution = prepare_distribution(
        config.strategy,
        batch_size=config.batch_size,
        mixed_precision=config.mixed_precision,
        seed=config.seed,
    )
    kind = get_preset(config.model)["kind"]
    if tokenizer is None:
        tokenizer = make_tokenizer(config.vocabulary)
    train, validation = training_data.pretraining_datasets(
        kind,
        tokenizer,
        config.dataset,
        sequence_length=config.sequence_length,
        batch_size=config.batch_size,
        seed=config.seed,
        data_dir=config.data_dir,
    )
    validation_steps = config.validation_steps or count_batches(validation)
    if validation_steps == 0:
        raise ValueError(
            f"the validation split of --dataset={config.dataset} holds less than one batch of "
            f"{config.batch_size}x{config.sequence_length} tokens"
        )
    validation = validation.take(validation_steps).cache()
    return RunSetup(
        config, strategy, distribution, kind, tokenizer, train, validation, validation_steps
    )
