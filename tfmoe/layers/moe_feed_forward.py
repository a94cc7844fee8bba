"""Sparse Mixture-of-Experts feed-forward layers: `SwitchFeedForward` and `Top2FeedForward`.

Pipeline (one implementation for both and for every partitioning, k = `top_k` experts
per token):

    x [batch, seq, hidden]
      -> Router (float32)                  logits [batch, seq, experts]
      -> softmax, route_top_k              RoutingInstructions (expert, slot, gate per token)
      -> dispatcher.dispatch               [experts, batch * capacity, hidden]
      -> expert_feed_forward               one batched matmul per weight
      -> dispatcher.combine                [batch, seq, hidden]

Everything from the router logits on is `MoeFeedForward.grouped_forward`, which the
layer's `call` and the expert-parallel path (`tfmoe.distribute.ExpertParallelMoe`) both
run. Tokens are routed in groups of up to `group_size` tokens (whole batch rows pooled
together), so that capacity is shared by many tokens and few are dropped. Only
`capacity_factor * tokens` slots are computed, whatever the number of experts: the
cost stays flat as experts grow. With `expert_capacity` (Hugging Face Switch
Transformers' routing) each sequence is a group and every expert has that many slots
in it. See `tfmoe.layers.routing` for groups, capacity and priority,
`tfmoe.layers.dispatch` for the gather / einsum implementations.
"""

import inspect
import math
import numbers
from typing import NamedTuple

import keras
import tensorflow as tf

from tfmoe.layers.dispatch import DISPATCH_MODES, make_dispatcher, resolve_dispatch
from tfmoe.layers.experts import ExpertFeedForward
from tfmoe.layers.losses import load_balancing_loss, router_z_loss
from tfmoe.layers.router import Router
from tfmoe.layers.routing import (
    PRIORITIES,
    RoutingInstructions,
    expert_capacity,
    route_top_k,
    routing_group_shape,
)
from tfmoe.layers.routing_metrics import RoutingMetrics

# Defaults chosen by measurement (README, "Routing groups and init"): groups as large as
# Mesh TensorFlow's, flaxformer / Mesh TensorFlow's minimum capacity, and expert and
# router weights on the same (unit) variance scale as every dense layer.
DEFAULT_GROUP_SIZE = 1024
DEFAULT_MIN_CAPACITY = 4
DEFAULT_INIT_SCALE = 1.0

# The MoE layer options that models pass through unchanged to every MoE layer (as
# `moe_options`): the one list of them. Their defaults are those of `MoeFeedForward`.
MOE_OPTIONS = (
    "capacity_factor",
    "eval_capacity_factor",
    "group_size",
    "min_capacity",
    "expert_capacity",
    "jitter_noise",
    "load_balance_weight",
    "z_loss_weight",
    "router_dtype",
    "dispatch",
    "priority",
    "routing_metrics",
)


def moe_option_defaults():
    """`{name: default}` of the `MOE_OPTIONS`: `MoeFeedForward`'s own defaults."""
    parameters = inspect.signature(MoeFeedForward.__init__).parameters
    return {name: parameters[name].default for name in MOE_OPTIONS}


class GroupedForward(NamedTuple):
    """Result of `MoeFeedForward.grouped_forward`.

    Attributes:
      outputs: `[groups, tokens, hidden]` combined expert outputs (0 for dropped
        assignments and padding).
      routing: the `RoutingInstructions`.
      aux_losses: the weighted auxiliary losses (load balancing, z-loss) when training
        with a weight > 0, else empty.
      z_loss: scalar float32 router z-loss (for the routing metrics).
    """

    outputs: tf.Tensor
    routing: RoutingInstructions
    aux_losses: tuple
    z_loss: tf.Tensor


def _check_count(name, value):
    """Raises ValueError unless `value` is an integer >= 1 (bools refused)."""
    is_count = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and int(value) == value
        and value >= 1
    )
    if not is_count:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def _check_rate(name, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value}.")


def _check_positive(name, value):
    """Raises ValueError unless `value` is a finite number > 0 (an infinite capacity
    factor would otherwise pass here and fail only when the layer is called)."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value}.")


@keras.saving.register_keras_serializable(package="tfmoe")
class MoeFeedForward(keras.layers.Layer):
    """Top-k routed expert feed-forward layer (base of the switch and top-2 layers).

    Call: `call(x, padding_mask=None, training=None)`, `x` `[batch, seq, hidden]`,
    `padding_mask` `[batch, seq]` (true/1 = real token) -> `[batch, seq, hidden]`.
    Assignments over capacity and padding tokens output zero (the residual connection
    around the layer carries them), whatever the padding tokens hold; a non-finite real
    token makes only its own output non-finite. Tokens are routed in groups of up to `group_size`
    tokens: whole consecutive batch rows, or slices of one row when rows are longer
    (`tfmoe.layers.routing.routing_group_shape`); with `expert_capacity`, one sequence
    each (`group_shape`).

    Auxiliary losses (training only) go through `add_loss`: the load-balancing loss,
    divided by k so that a balanced router scores 1 for any k, times
    `load_balance_weight`, plus `z_loss_weight` times the router z-loss.

    After a call, `routing_stats` holds the latest per-expert assignment fraction
    `[num_experts]`, the dropped fraction and the router z-loss; `fit` logs running
    averages through `RoutingMetrics`.

    Args:
      num_experts: number of experts (>= top_k).
      intermediate_dim: hidden size of each expert.
      top_k: experts per token (1: Switch, 2: GShard / GLaM).
      capacity_factor: capacity factor while training.
      eval_capacity_factor: capacity factor at inference.
      group_size: most tokens per routing group (Mesh TensorFlow: 1024).
      min_capacity: least expert capacity per group (flaxformer / Mesh TensorFlow: 4);
        capacity never exceeds the group's token count.
      expert_capacity: None (default: capacity from the capacity factors), or slots per
        expert in each sequence (Hugging Face Switch Transformers' `expert_capacity`):
        every sequence is one routing group (rows never pooled nor cut, `group_size`
        unused) and each expert takes at most `min(expert_capacity, seq_len)` of its
        assignments, in training and inference alike (the capacity factors and
        `min_capacity` unused). Cached generation routes one token per row, which no
        capacity >= 1 drops.
      activation: expert activation.
      gated: GEGLU/SwiGLU-style gated experts.
      dropout: dropout rate on the layer output.
      expert_dropout: dropout rate on the experts' hidden activations.
      jitter_noise: multiplicative router input noise `uniform(1 +- eps)`, training only.
      load_balance_weight: weight of the load-balancing loss.
      z_loss_weight: weight of the router z-loss.
      router_dtype: dtype policy of the router (float32: selective precision).
      init_scale: variance scale of the router and expert initializers (truncated
        normal, std `sqrt(init_scale / fan_in)`); 1.0 matches the dense layers of
        `tfmoe.layers` (see README, "Init").
      dispatch: `"gather"` (sparse, CPU/GPU), `"einsum"` (one-hot, TPU), `"auto"`.
      priority: order in which assignments claim capacity: `"token"` (default; each
        token places all its choices before any later token: causal for any k),
        `"position"` (GShard: all first choices first; causal for k=1 only) or
        `"probability"` (batch-prioritized routing; not causal).
      routing_metrics: log routing metrics in `fit`/`evaluate`.
      metrics_name: name of the routing metrics (prefix of their `fit` log keys);
        defaults to the layer's name. Stacks give each layer a model-unique one.
      seed: seed of the jitter noise.

    The options models pass through to every MoE layer are listed in `MOE_OPTIONS`.
    """

    def __init__(
        self,
        num_experts,
        intermediate_dim,
        top_k=1,
        *,
        capacity_factor=1.25,
        eval_capacity_factor=2.0,
        group_size=DEFAULT_GROUP_SIZE,
        min_capacity=DEFAULT_MIN_CAPACITY,
        expert_capacity=None,
        activation="relu",
        gated=False,
        dropout=0.0,
        expert_dropout=0.0,
        jitter_noise=0.0,
        load_balance_weight=0.01,
        z_loss_weight=0.0,
        router_dtype="float32",
        init_scale=DEFAULT_INIT_SCALE,
        dispatch="auto",
        priority="token",
        routing_metrics=True,
        metrics_name=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
            raise ValueError(f"`top_k` must be an integer >= 1, got {top_k!r}.")
        k = int(top_k)
        if int(num_experts) < k:
            raise ValueError(
                f"`num_experts` must be >= {k} for top-{k} routing, got {num_experts}."
            )
        if int(intermediate_dim) < 1:
            raise ValueError(f"`intermediate_dim` must be >= 1, got {intermediate_dim}.")
        _check_positive("capacity_factor", capacity_factor)
        _check_positive("eval_capacity_factor", eval_capacity_factor)
        _check_count("group_size", group_size)
        _check_count("min_capacity", min_capacity)
        if expert_capacity is not None:
            _check_count("expert_capacity", expert_capacity)
        _check_rate("dropout", dropout)
        _check_rate("expert_dropout", expert_dropout)
        _check_rate("jitter_noise", jitter_noise)
        for name, value in (
            ("load_balance_weight", load_balance_weight),
            ("z_loss_weight", z_loss_weight),
        ):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
        _check_positive("init_scale", init_scale)
        if dispatch not in DISPATCH_MODES:
            raise ValueError(f"`dispatch` must be one of {DISPATCH_MODES}, got {dispatch!r}.")
        if priority not in PRIORITIES:
            raise ValueError(f"`priority` must be one of {PRIORITIES}, got {priority!r}.")

        self.num_experts = int(num_experts)
        self.intermediate_dim = int(intermediate_dim)
        self.top_k = k
        self.capacity_factor = float(capacity_factor)
        self.eval_capacity_factor = float(eval_capacity_factor)
        self.group_size = int(group_size)
        self.min_capacity = int(min_capacity)
        self.expert_capacity = None if expert_capacity is None else int(expert_capacity)
        self.activation = activation
        self.gated = bool(gated)
        self.dropout = float(dropout)
        self.expert_dropout = float(expert_dropout)
        self.jitter_noise = float(jitter_noise)
        self.load_balance_weight = float(load_balance_weight)
        self.z_loss_weight = float(z_loss_weight)
        self.router_dtype = router_dtype
        self.init_scale = float(init_scale)
        self.dispatch = dispatch
        self.priority = priority
        self.routing_metrics = bool(routing_metrics)
        self.metrics_name = metrics_name
        self.seed = seed
        self.supports_masking = True

        self.router = Router(
            self.num_experts,
            jitter_noise=self.jitter_noise,
            seed=seed,
            kernel_initializer=keras.initializers.VarianceScaling(
                scale=self.init_scale, mode="fan_in", distribution="truncated_normal"
            ),
            dtype=router_dtype,
            name="router",
        )
        self.experts = ExpertFeedForward(
            self.num_experts,
            self.intermediate_dim,
            activation=activation,
            gated=gated,
            dropout=self.expert_dropout,
            init_scale=self.init_scale,
            dtype=self.dtype_policy,
            name="experts",
        )
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.routing_tracker = RoutingMetrics(
            self.num_experts, log=self.routing_metrics, name=metrics_name or self.name
        )
        self._hidden_dim = None

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape [batch, seq, hidden] with a "
                f"known hidden size, got {tuple(input_shape)}."
            )
        self._hidden_dim = int(input_shape[-1])
        self.router.build(input_shape)
        self.experts.build((self.num_experts, None, self._hidden_dim))

    def _check_inputs(self, inputs, padding_mask):
        if inputs.shape.rank != 3:
            raise ValueError(
                f"{type(self).__name__} expects `x` of shape [batch, seq, hidden], "
                f"got shape {inputs.shape}."
            )
        if inputs.shape[-1] != self._hidden_dim:
            raise ValueError(
                f"{type(self).__name__} was built for hidden size {self._hidden_dim}, "
                f"but `x` has hidden size {inputs.shape[-1]}."
            )
        if padding_mask is not None:
            padding_mask = tf.convert_to_tensor(padding_mask)
            if padding_mask.shape.rank != 2 or not padding_mask.shape.is_compatible_with(
                inputs.shape[:2]
            ):
                raise ValueError(
                    "`padding_mask` must have shape [batch, seq] matching `x` "
                    f"{inputs.shape[:2]}, got {padding_mask.shape}."
                )
            padding_mask = tf.cast(padding_mask, tf.bool)
        return padding_mask

    def call(self, inputs, padding_mask=None, training=None):
        padding_mask = self._check_inputs(inputs, padding_mask)
        if inputs.shape[1] == 0:
            return tf.zeros_like(inputs)  # nothing to route
        # Non-finite tokens are routed like padding: zeroed (`tf.where`: NaN * 0 is NaN) and
        # given no slot, so they reach neither the router statistics nor another token's
        # expert slots (the einsum dispatch multiplies every token by every slot's weight).
        # A non-finite real token's output is NaN: it affects itself only.
        finite = tf.reduce_all(tf.math.is_finite(inputs), axis=-1)  # [B, S]
        poisoned = tf.logical_not(finite)  # real, non-finite
        if padding_mask is None:
            padding_mask = finite
        else:
            poisoned = tf.logical_and(poisoned, padding_mask)
            padding_mask = tf.logical_and(finite, padding_mask)
        inputs = tf.where(padding_mask[..., None], inputs, tf.zeros_like(inputs))
        shape = tf.shape(inputs)
        batch, seq_len = [
            dim if dim is not None else shape[axis] for axis, dim in enumerate(inputs.shape[:2])
        ]
        rows, positions = self.group_shape(batch, seq_len)
        tokens = rows * positions  # per group T
        groups = (batch // rows) * (seq_len // positions)  # G
        logits = tf.reshape(
            self.router(inputs, training=training), [groups, tokens, self.num_experts]
        )  # [G, T, E] f32
        result = self.grouped_forward(
            tf.reshape(inputs, [groups, tokens, inputs.shape[-1]]),
            tf.reshape(padding_mask, [groups, tokens]),
            logits,
            lambda expert_inputs: self.experts(expert_inputs, training=training),
            rows_per_group=rows,
            dispatch=resolve_dispatch(self.dispatch),
            training=training,
        )
        for loss in result.aux_losses:
            self.add_loss(loss)
        outputs = tf.reshape(result.outputs, shape)  # [B, S, H]
        outputs = self.output_dropout(outputs, training=training)
        outputs = tf.where(poisoned[..., None], tf.constant(float("nan"), outputs.dtype), outputs)

        routing = result.routing
        self.routing_tracker.update_state(
            routing.expert_index, routing.valid, routing.kept, result.z_loss
        )
        return outputs

    def group_shape(self, batch, seq_len):
        """`(rows, positions)`: the block of `[batch, seq_len]` tokens that forms a
        routing group. One whole sequence `(1, seq_len)` with `expert_capacity`, else
        `tfmoe.layers.routing.routing_group_shape` for `group_size`. Python ints for
        static sizes, else int32 scalar tensors."""
        if self.expert_capacity is None:
            return routing_group_shape(batch, seq_len, self.group_size)
        if isinstance(seq_len, int):
            return 1, seq_len
        return 1, tf.maximum(tf.cast(seq_len, tf.int32), 1)

    def capacity(self, tokens_per_group, training=None):
        """Expert capacity per routing group of `tokens_per_group` tokens.

        With `expert_capacity`: `min(expert_capacity, tokens_per_group)`, in training and
        inference. Otherwise from the capacity factor of the mode: each token makes
        `top_k` assignments, so top-k capacity is k times switch capacity (GShard: 2N/E
        for top-2); no expert can take more than every token.
        """
        if self.expert_capacity is not None:
            if isinstance(tokens_per_group, int):
                return min(self.expert_capacity, tokens_per_group)
            return tf.minimum(self.expert_capacity, tf.cast(tokens_per_group, tf.int32))
        factor = self.capacity_factor if training else self.eval_capacity_factor
        return expert_capacity(
            tokens_per_group * self.top_k,
            factor,
            self.num_experts,
            self.min_capacity,
            max_capacity=tokens_per_group,
        )

    def grouped_forward(
        self,
        grouped,
        padding_mask,
        router_logits,
        experts,
        *,
        rows_per_group,
        dispatch,
        training=None,
    ):
        """The MoE computation on grouped tokens, after the router: routing instructions
        -> dispatch -> experts -> combine, and the auxiliary losses.

        One code path for every partitioning: `call` runs it on local tensors,
        `tfmoe.distribute.ExpertParallelMoe` on DTensors with expert-sharded `experts`.

        Args:
          grouped: `[groups, tokens, hidden]` token states (padding zeroed).
          padding_mask: bool `[groups, tokens]`, true for real tokens.
          router_logits: `[groups, tokens, num_experts]`.
          experts: callable `[E, groups * capacity, hidden]` -> same shape.
          rows_per_group: batch rows in each group (`group_shape`).
          dispatch: a resolved dispatch mode, `"gather"` or `"einsum"`.
          training: capacity factor and auxiliary losses switch.

        Returns:
          `GroupedForward`.
        """
        tokens = grouped.shape[1] if grouped.shape[1] is not None else tf.shape(grouped)[1]
        probs = tf.nn.softmax(tf.cast(router_logits, tf.float32), axis=-1)
        routing = route_top_k(
            probs,
            self.top_k,
            self.capacity(tokens, training),
            padding_mask,
            priority=self.priority,
            rows_per_group=rows_per_group,
        )
        z_loss = router_z_loss(router_logits, padding_mask)
        aux_losses = []
        if training:
            if self.load_balance_weight > 0:
                balance = load_balancing_loss(probs, routing.expert_index, padding_mask)
                aux_losses.append(self.load_balance_weight * balance / self.top_k)
            if self.z_loss_weight > 0:
                aux_losses.append(self.z_loss_weight * z_loss)

        dispatcher = make_dispatcher(dispatch, routing, self.num_experts)
        outputs = dispatcher.combine(experts(dispatcher.dispatch(grouped)))  # [G, T, H]
        return GroupedForward(outputs, routing, tuple(aux_losses), z_loss)

    @property
    def routing_stats(self):
        """Latest call's `{"expert_fraction": [E], "dropped_fraction": (), "router_z_loss": ()}`.

        `expert_fraction` is each expert's share of the routed assignments (before
        capacity; sums to 1), `dropped_fraction` the share of assignments over capacity.
        """
        return self.routing_tracker.latest()

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            intermediate_dim=self.intermediate_dim,
            top_k=self.top_k,
            capacity_factor=self.capacity_factor,
            eval_capacity_factor=self.eval_capacity_factor,
            group_size=self.group_size,
            min_capacity=self.min_capacity,
            expert_capacity=self.expert_capacity,
            activation=keras.activations.serialize(keras.activations.get(self.activation)),
            gated=self.gated,
            dropout=self.dropout,
            expert_dropout=self.expert_dropout,
            jitter_noise=self.jitter_noise,
            load_balance_weight=self.load_balance_weight,
            z_loss_weight=self.z_loss_weight,
            router_dtype=self.router_dtype,
            init_scale=self.init_scale,
            dispatch=self.dispatch,
            priority=self.priority,
            routing_metrics=self.routing_metrics,
            metrics_name=self.metrics_name,
            seed=self.seed,
        )
        return config


def _check_fixed_top_k(cls, top_k, fixed):
    if top_k != fixed:
        raise ValueError(
            f"{cls.__name__} routes every token to `top_k={fixed}` expert(s), got "
            f"`top_k={top_k!r}`; use `MoeFeedForward(top_k=...)` for other values."
        )


@keras.saving.register_keras_serializable(package="tfmoe")
class SwitchFeedForward(MoeFeedForward):
    """Switch Transformer expert layer: top-1 routing, gate = router probability.

    See `MoeFeedForward` for arguments and call signature; `top_k` is fixed at 1 (any
    other value raises ValueError).
    """

    def __init__(self, num_experts, intermediate_dim, *, top_k=1, **kwargs):
        _check_fixed_top_k(type(self), top_k, 1)
        super().__init__(num_experts, intermediate_dim, top_k=1, **kwargs)


@keras.saving.register_keras_serializable(package="tfmoe")
class Top2FeedForward(MoeFeedForward):
    """GShard / GLaM expert layer: top-2 routing.

    The second expert is the best among the rest; the two gates are renormalised to
    sum to 1. With `priority="position"` second choices take capacity only after all
    first choices of the group (GShard, for encoders); the default `"token"` places
    both choices of a token before any later token (causal, for decoders).
    See `MoeFeedForward` for arguments and call signature; `top_k` is fixed at 2 (any
    other value raises ValueError).
    """

    def __init__(self, num_experts, intermediate_dim, *, top_k=2, **kwargs):
        _check_fixed_top_k(type(self), top_k, 2)
        super().__init__(num_experts, intermediate_dim, top_k=2, **kwargs)
