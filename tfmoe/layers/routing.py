"""Routing instructions: which expert, which buffer slot and which gate for every token.

The step between the router (logits) and dispatch (moving tokens), as in flaxformer:
`router probabilities -> RoutingInstructions -> dispatch / combine`.

Groups and capacity
-------------------
Every row of the batch is one routing group. Each expert accepts at most
`capacity = ceil(tokens_per_group * capacity_factor / num_experts)` tokens per group,
where with top-k routing a token counts once per expert it picks (`tokens_per_group =
k * seq`, GShard's `2N/E` for top-2), so capacity factor 1.0 leaves room for every
assignment of a perfectly balanced router;
assignments beyond that are dropped (the layer outputs zero for them, so the residual
connection around the layer carries the token through unchanged).

Priority
--------
- `"position"` (default): earlier tokens claim capacity first, and with top-k routing
  all first choices are served before any second choice (GShard). A token's routing
  therefore never depends on later tokens, so causal decoders stay causal.
- `"probability"`: batch-prioritized routing (V-MoE): tokens with a higher top-1 router
  probability claim capacity first (still all first choices before second choices).

Padding tokens are never routed: they take no capacity and get zero combine weight.
"""

import math
from typing import NamedTuple, Union

import tensorflow as tf

PRIORITIES = ("position", "probability")


class RoutingInstructions(NamedTuple):
    """Per-token routing decisions for `[groups, seq]` tokens and `k` choices each.

    Attributes:
      expert_index: int32 `[groups, seq, k]` chosen experts (best first).
      position: int32 `[groups, seq, k]` slot in the expert's per-group buffer
        (may be >= capacity for dropped assignments).
      valid: bool `[groups, seq, k]` true for the assignments of real (non-padding) tokens.
      kept: bool `[groups, seq, k]` true where the assignment fits in capacity and the
        token is not padding.
      combine_weight: float32 `[groups, seq, k]` gate of each kept assignment, 0 elsewhere.
      capacity: expert capacity per group (Python int when shapes are static).
    """

    expert_index: tf.Tensor
    position: tf.Tensor
    valid: tf.Tensor
    kept: tf.Tensor
    combine_weight: tf.Tensor
    capacity: Union[int, tf.Tensor]


def expert_capacity(tokens_per_group, capacity_factor, num_experts):
    """`ceil(tokens_per_group * capacity_factor / num_experts)`, at least 1.

    Returns a Python int for a static `tokens_per_group`, else an int32 scalar tensor.
    """
    if isinstance(tokens_per_group, int):
        # Round away float noise first (e.g. 256 * 1.1 / 8 = 35.200000000000003).
        return max(1, math.ceil(round(tokens_per_group * capacity_factor / num_experts, 6)))
    tokens = tf.cast(tokens_per_group, tf.float64)
    capacity = tf.math.ceil(tf.round(tokens * capacity_factor / num_experts * 1e6) / 1e6)
    return tf.maximum(1, tf.cast(capacity, tf.int32))


def _positions_in_expert(expert_index, valid, num_experts):
    """Buffer slot of every assignment, choice-major then by token order.

    Sort-based, O(n log n) per group with no `[tokens, experts]` tensor: assignments are
    sorted by (expert, choice rank, token index); an assignment's slot is its rank in
    that order minus the number of assignments that went to lower-numbered experts.

    Args:
      expert_index: int32 `[G, S, k]`.
      valid: bool `[G, S, k]`; invalid assignments take no slot.

    Returns:
      int32 `[G, S, k]`: number of earlier valid assignments to the same expert, where
      "earlier" means a lower choice rank, or the same rank and a lower token index.
      (Arbitrary for invalid assignments.)
    """
    k = expert_index.shape[-1]
    shape = tf.shape(expert_index)
    groups, assignments = shape[0], k * shape[1]
    # Choice-major order: all first choices by token, then all second choices, ...
    expert = tf.reshape(tf.transpose(
        tf.where(valid, expert_index, num_experts), [0, 2, 1]), [groups, assignments])
    order_key = expert * assignments + tf.range(assignments)[None, :]
    order = tf.argsort(order_key, axis=1, stable=True)                     # [G, A]
    rank = tf.argsort(order, axis=1, stable=True)                          # inverse perm
    counts = tf.math.unsorted_segment_sum(                                  # [G * (E+1)]
        tf.ones_like(expert), expert + (num_experts + 1) * tf.range(groups)[:, None],
        groups * (num_experts + 1))
    first_rank = tf.cumsum(tf.reshape(counts, [groups, num_experts + 1]), axis=1,
                           exclusive=True)                                  # [G, E+1]
    position = rank - tf.gather(first_rank, expert, batch_dims=1)          # [G, A]
    return tf.transpose(tf.reshape(position, [groups, k, shape[1]]), [0, 2, 1])


def route_top_k(router_probs, k, capacity, padding_mask=None, priority="position",
                normalize_gates=None):
    """Builds `RoutingInstructions` from router probabilities.

    Args:
      router_probs: float32 `[groups, seq, num_experts]` softmax probabilities.
      k: experts per token (1 = Switch, 2 = GShard/GLaM top-2).
      capacity: expert capacity per group (see `expert_capacity`).
      padding_mask: optional bool `[groups, seq]`, true for real tokens.
      priority: `"position"` or `"probability"` (see module docstring).
      normalize_gates: renormalise the k gates of a token to sum to 1; defaults to
        `k > 1` (GShard); Switch (k=1) keeps the raw router probability as the gate.

    Returns:
      `RoutingInstructions`.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"`priority` must be one of {PRIORITIES}, got {priority!r}.")
    num_experts = router_probs.shape[-1]
    if normalize_gates is None:
        normalize_gates = k > 1
    gates, expert_index = tf.math.top_k(router_probs, k=k)                 # [G, S, k]
    expert_index = tf.cast(expert_index, tf.int32)
    if normalize_gates:
        gates = gates / tf.maximum(tf.reduce_sum(gates, -1, keepdims=True), 1e-9)

    if padding_mask is None:
        valid = tf.ones_like(expert_index, dtype=tf.bool)
    else:
        valid = tf.broadcast_to(
            tf.cast(padding_mask, tf.bool)[..., None], tf.shape(expert_index))

    if priority == "position":
        position = _positions_in_expert(tf.stop_gradient(expert_index), valid, num_experts)
    else:
        # Sort tokens of each group by top-1 probability (padding last), route in that
        # order, then scatter the positions back to token order.
        score = tf.where(valid[..., 0], tf.stop_gradient(gates[..., 0]), -1.0)
        order = tf.argsort(score, axis=1, direction="DESCENDING", stable=True)
        inverse = tf.argsort(order, axis=1, stable=True)
        sorted_position = _positions_in_expert(
            tf.gather(expert_index, order, batch_dims=1),
            tf.gather(valid, order, batch_dims=1), num_experts)
        position = tf.gather(sorted_position, inverse, batch_dims=1)

    kept = tf.logical_and(valid, position < capacity)
    combine_weight = gates * tf.cast(kept, gates.dtype)
    return RoutingInstructions(expert_index, position, valid, kept, combine_weight, capacity)
