"""Work-arounds for Keras bugs under `tf.distribute`, as a mixin for `keras.Model` subclasses.

Keras 3 (checked on 3.15) builds the model before `fit` by taking the first
distributed batch and `strategy.reduce("MEAN", batch)`
(`TensorFlowTrainer._maybe_symbolic_build`). That reduction:

- fails under `MultiWorkerMirroredStrategy` for dict inputs ("Attempt to convert a
  value ({'token_ids': PerReplica...}) with an unsupported type (<class 'dict'>)",
  keras-team/keras#20329);
- fails under `MirroredStrategy` for bool tensors such as padding masks.

Only shapes and dtypes matter for that build, so `DistributedBuildMixin` takes the
first replica's local batch instead: no collective, any dtype, any structure.

Under `MultiWorkerMirroredStrategy` Keras then reduces every step's logs with
`strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar metrics
("Invalid reduction dimension 0 for input with 0 dimensions", tensorflow#72388).
The mixin's `train_step` / `test_step` give scalar logs a leading axis of 1 there;
the reduction then averages over replicas and returns scalars again.
"""

import keras
import tensorflow as tf

from tfmoe.distribute.runtime import strategy_kind


def _first_replica(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _is_multi_worker(strategy):
    return strategy_kind(strategy) == "multi_worker"


def _with_replica_axis(logs):
    def expand(value):
        if isinstance(value, tf.Tensor) and value.shape.rank == 0:
            return tf.reshape(value, [1])
        return value

    return keras.tree.map_structure(expand, logs)


class DistributedBuildMixin:
    """Mix into a `keras.Model` subclass (before `keras.Model`) to fix `fit` under strategies."""

    def train_step(self, data):
        logs = super().train_step(data)
        return _with_replica_axis(logs) if _is_multi_worker(self.distribute_strategy) else logs

    def test_step(self, data):
        logs = super().test_step(data)
        return _with_replica_axis(logs) if _is_multi_worker(self.distribute_strategy) else logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, step_iterator in iterator:
            data_batch = keras.tree.map_structure(_first_replica, next(step_iterator))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)
