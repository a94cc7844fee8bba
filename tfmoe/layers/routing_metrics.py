"""Routing statistics as a Keras metric (Keras 3 has no `Layer.add_metric`).

A `RoutingMetrics` object lives on each MoE layer. Keras collects sublayer metrics into
`model.metrics`, so `fit`/`evaluate` logs (and the TensorBoard callback) get, per layer:

- `<layer>/dropped_fraction`: dropped assignments / routed assignments (padding excluded),
- `<layer>/expert_load_max`: busiest expert's share of assignments x num_experts
  (1.0 = perfectly balanced, num_experts = everything on one expert),
- `<layer>/router_z_loss`: router z-loss, token-weighted,

averaged since the last `reset_state` (Keras resets metrics every epoch). The latest
call's values (including the per-expert fractions) are kept separately for
`layer.routing_stats`. Variables are on-read synchronised, so under `tf.distribute`
counts are summed over replicas and the "latest" values averaged.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmoe")
class RoutingMetrics(keras.metrics.Metric):
    """Accumulates routing statistics of one MoE layer.

    Args:
      num_experts: number of experts.
      log: when False, `result()` is empty (nothing shows up in `fit` logs) while
        `latest()` still works.
    """

    def __init__(self, num_experts, log=True, name="routing", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_experts = int(num_experts)
        self.log = bool(log)
        add = self.add_variable
        self.assignments = add((self.num_experts,), "zeros", name="assignments")
        self.dropped = add((), "zeros", name="dropped")
        self.tokens = add((), "zeros", name="tokens")
        self.z_loss_sum = add((), "zeros", name="z_loss_sum")
        self.latest_expert_fraction = add(
            (self.num_experts,), "zeros", aggregation="mean", name="latest_expert_fraction"
        )
        self.latest_dropped_fraction = add(
            (), "zeros", aggregation="mean", name="latest_dropped_fraction"
        )
        self.latest_z_loss = add((), "zeros", aggregation="mean", name="latest_z_loss")

    def update_state(self, expert_index, valid, kept, z_loss):
        """Records one call.

        Args:
          expert_index: int `[G, S, k]`; valid, kept: bool `[G, S, k]`; z_loss: scalar.
        """
        valid_f = ops.cast(valid, "float32")
        per_expert = ops.segment_sum(
            ops.reshape(valid_f, [-1]),
            ops.reshape(expert_index, [-1]),
            num_segments=self.num_experts,
        )
        routed = ops.sum(valid_f)
        dropped = routed - ops.sum(ops.cast(kept, "float32"))
        tokens = ops.sum(valid_f[..., 0])
        z_loss = ops.cast(z_loss, "float32")
        self.assignments.assign_add(per_expert)
        self.dropped.assign_add(dropped)
        self.tokens.assign_add(tokens)
        self.z_loss_sum.assign_add(z_loss * tokens)
        self.latest_expert_fraction.assign(ops.divide_no_nan(per_expert, routed))
        self.latest_dropped_fraction.assign(ops.divide_no_nan(dropped, routed))
        self.latest_z_loss.assign(z_loss)

    def result(self):
        if not self.log:
            return {}
        routed = ops.sum(self.assignments)
        return {
            f"{self.name}/dropped_fraction": ops.divide_no_nan(self.dropped, routed),
            f"{self.name}/expert_load_max": ops.divide_no_nan(
                ops.max(self.assignments) * self.num_experts, routed
            ),
            f"{self.name}/router_z_loss": ops.divide_no_nan(self.z_loss_sum, self.tokens),
        }

    def latest(self):
        """Values of the latest call: per-expert fraction `[E]`, dropped fraction, z-loss."""
        return {
            "expert_fraction": ops.convert_to_tensor(self.latest_expert_fraction),
            "dropped_fraction": ops.convert_to_tensor(self.latest_dropped_fraction),
            "router_z_loss": ops.convert_to_tensor(self.latest_z_loss),
        }

    def get_config(self):
        return {
            "num_experts": self.num_experts,
            "log": self.log,
            "name": self.name,
            "dtype": self.dtype,
        }
