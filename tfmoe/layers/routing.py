"""Routing instructions: which expert, which buffer slot and which gate for every token.

The step between the router (logits) and dispatch (moving tokens), as in flaxformer:
`router probabilities -> RoutingInstructions -> dispatch / combine`.

Groups
------
Tokens are routed in groups of at most `group_size` tokens (flaxformer and Mesh
TensorFlow use 4096 and 1024). A group is a block of whole consecutive batch rows
(`rows_per_group` of them, the largest divisor of the batch with `rows * seq <=
group_size`), or, for sequences longer than `group_size`, a block of consecutive
positions of one row. Either way the groups are contiguous slices of the row-major
`[batch * seq]` tokens, so grouping is a reshape. See `routing_group_shape`.

Capacity
--------
Each expert accepts at most `capacity = ceil(k * tokens_per_group * capacity_factor /
num_experts)` assignments per group (GShard's `2N/E` for top-2: a token counts once per
expert it picks, so capacity factor 1.0 leaves room for every assignment of a perfectly
balanced router), but at least `min_capacity` (flaxformer and Mesh TensorFlow: 4) and at
most `tokens_per_group` (no expert can receive more). An absolute capacity per group
(Hugging Face Switch Transformers' `expert_capacity`, with one group per sequence) is
the layer's `expert_capacity` option instead. Assignments beyond capacity are
dropped: the layer outputs zero for them, so the residual connection around the layer
carries the token through unchanged.

Priority
--------
Within a group, tokens are taken in position-major order: position 0 of every row of
the group, then position 1, ... Assignments claim capacity in this order:

- `"token"`: each token places all its k choices before any later token. A token's
  routing never depends on a later position of its own sequence, for any k: causal
  decoders stay causal.
- `"position"`: all first choices of the group, in token order, before any second
  choice (GShard). Causal for k=1 only (then identical to `"token"`): a second choice
  waits for the first choices of later tokens. The encoder default.
- `"probability"`: batch-prioritized routing (V-MoE): tokens with a higher top-1 router
  probability claim capacity first (still all first choices before second choices).
  Not causal.

Padding tokens are never routed: they take no capacity and get zero combine weight.
"""

import math
from typing import NamedTuple, Union

import tensorflow as tf

PRIORITIES = ("position", "token", "probability")


class RoutingInstructions(NamedTuple):
    """Per-token routing decisions for `[groups, tokens]` tokens and `k` choices each.

    Attributes:
      expert_index: int32 `[groups, tokens, k]` chosen experts (best first).
      position: int32 `[groups, tokens, k]` slot in the expert's per-group buffer
        (may be >= capacity for dropped assignments).
      valid: bool `[groups, tokens, k]` true for the assignments of real (non-padding)
        tokens.
      kept: bool `[groups, tokens, k]` true where the assignment fits in capacity and
        the token is not padding.
      combine_weight: float32 `[groups, tokens, k]` gate of each kept assignment, 0
        elsewhere.
      capacity: expert capacity per group (Python int when shapes are static).
    """

    expert_index: tf.Tensor
    position: tf.Tensor
    valid: tf.Tensor
    kept: tf.Tensor
    combine_weight: tf.Tensor
    capacity: Union[int, tf.Tensor]


def _is_static(*values):
    return all(isinstance(v, int) for v in values)


def expert_capacity(
    tokens_per_group, capacity_factor, num_experts, min_capacity=1, max_capacity=None
):
    """`ceil(tokens_per_group * capacity_factor / num_experts)`, clipped to
    `[min_capacity, max_capacity]` (and at least 1).

    `tokens_per_group` counts assignments (k per token for top-k routing). Returns a
    Python int when every argument is static, else an int32 scalar tensor.
    """
    floor = max(1, int(min_capacity))
    if _is_static(tokens_per_group) and (max_capacity is None or _is_static(max_capacity)):
        # Round away float noise first (e.g. 256 * 1.1 / 8 = 35.200000000000003).
        capacity = max(floor, math.ceil(round(tokens_per_group * capacity_factor / num_experts, 6)))
        return capacity if max_capacity is None else max(1, min(capacity, max_capacity))
    tokens = tf.cast(tokens_per_group, tf.float64)
    capacity = tf.math.ceil(tf.round(tokens * capacity_factor / num_experts * 1e6) / 1e6)
    capacity = tf.maximum(floor, tf.cast(capacity, tf.int32))
    if max_capacity is not None:
        capacity = tf.maximum(1, tf.minimum(capacity, tf.cast(max_capacity, tf.int32)))
    return capacity


def _largest_divisor_at_most(n, limit):
    """The largest divisor of `n` that is `<= limit` (at least 1)."""
    if _is_static(n, limit):
        limit = max(1, min(n, limit))
        return next(d for d in range(limit, 0, -1) if n % d == 0)
    n = tf.cast(n, tf.int32)
    candidates = tf.range(1, tf.maximum(1, tf.minimum(n, tf.cast(limit, tf.int32))) + 1)
    return tf.reduce_max(tf.where(tf.equal(n % candidates, 0), candidates, 1))


def routing_group_shape(batch, seq_len, group_size):
    """`(rows, positions)`: the block of tokens `[rows, positions]` that forms a group.

    `seq_len < group_size`: whole rows, `rows` the largest divisor of `batch` with
    `rows * seq_len <= group_size`, `positions = seq_len`. Otherwise one row per group
    and `positions` the largest divisor of `seq_len` that is `<= group_size`. Python
    ints for static `batch` and `seq_len`, else int32 scalar tensors.
    """
    if _is_static(batch, seq_len):
        if seq_len >= group_size:
            return 1, _largest_divisor_at_most(seq_len, group_size)
        return _largest_divisor_at_most(batch, group_size // seq_len), seq_len
    batch, seq_len = tf.cast(batch, tf.int32), tf.cast(seq_len, tf.int32)
    whole_rows = seq_len < group_size
    rows = tf.where(
        whole_rows,
        _largest_divisor_at_most(batch, tf.maximum(1, group_size // tf.maximum(seq_len, 1))),
        1,
    )
    positions = tf.where(whole_rows, seq_len, _largest_divisor_at_most(seq_len, group_size))
    return rows, tf.maximum(positions, 1)


def _token_order(tokens, rows):
    """Position-major rank `[tokens]` of each token of a group stored row-major as
    `[rows, tokens // rows]`: position 0 of every row first, then position 1, ..."""
    index = tf.range(tokens)
    positions = tokens // rows
    return (index % positions) * rows + index // positions


def _positions_in_expert(expert_index, valid, rank, num_experts):
    """Buffer slot of every assignment, in priority order.

    Sort-based, O(n log n) per group with no `[tokens, experts]` tensor: assignments are
    sorted by (expert, rank); an assignment's slot is its place in that order minus the
    number of assignments that went to lower-numbered experts.

    Args:
      expert_index: int32 `[G, T, k]`.
      valid: bool `[G, T, k]`; invalid assignments take no slot.
      rank: int32 `[G, T, k]`, the priority of each assignment: a permutation of
        `0 .. T*k - 1` within each group (lower is served first).

    Returns:
      int32 `[G, T, k]`: number of valid assignments to the same expert with a lower
      rank. (Arbitrary for invalid assignments.)
    """
    shape = tf.shape(expert_index)
    groups, assignments = shape[0], shape[1] * shape[2]
    expert = tf.reshape(tf.where(valid, expert_index, num_experts), [groups, assignments])
    order_key = expert * assignments + tf.reshape(rank, [groups, assignments])
    order = tf.argsort(order_key, axis=1, stable=True)  # [G, A]
    place = tf.argsort(order, axis=1, stable=True)  # inverse perm
    counts = tf.math.unsorted_segment_sum(  # [G * (E+1)]
        tf.ones_like(expert),
        expert + (num_experts + 1) * tf.range(groups)[:, None],
        groups * (num_experts + 1),
    )
    first_place = tf.cumsum(
        tf.reshape(counts, [groups, num_experts + 1]), axis=1, exclusive=True
    )  # [G, E+1]
    position = place - tf.gather(first_place, expert, batch_dims=1)  # [G, A]
    return tf.reshape(position, shape)


def _assignment_rank(token_rank, top_k, priority):
    """Priority rank `[G, T, k]` of every assignment from the tokens' rank `[G or 1, T]`."""
    tokens = tf.shape(token_rank)[1]
    choice = tf.range(top_k)[None, None, :]
    if priority == "token":
        return token_rank[..., None] * top_k + choice
    return choice * tokens + token_rank[..., None]  # choices first


def route_top_k(
    router_probs,
    top_k,
    capacity,
    padding_mask=None,
    priority="position",
    normalize_gates=None,
    rows_per_group=1,
):
    """Builds `RoutingInstructions` from router probabilities.

    Args:
      router_probs: float32 `[groups, tokens, num_experts]` softmax probabilities; each
        group's tokens stored row-major as `[rows_per_group, tokens // rows_per_group]`.
      top_k: experts per token k (1 = Switch, 2 = GShard/GLaM top-2).
      capacity: expert capacity per group (see `expert_capacity`).
      padding_mask: optional bool `[groups, tokens]`, true for real tokens.
      priority: `"token"`, `"position"` or `"probability"` (see module docstring).
      normalize_gates: renormalise the k gates of a token to sum to 1; defaults to
        `top_k > 1` (GShard); Switch (k=1) keeps the raw router probability as the gate.
      rows_per_group: batch rows in each group (sets the position-major token order).

    Returns:
      `RoutingInstructions`.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"`priority` must be one of {PRIORITIES}, got {priority!r}.")
    num_experts = router_probs.shape[-1]
    if normalize_gates is None:
        normalize_gates = top_k > 1
    gates, expert_index = tf.math.top_k(router_probs, k=top_k)  # [G, T, k]
    expert_index = tf.cast(expert_index, tf.int32)
    if normalize_gates:
        gates = gates / tf.maximum(tf.reduce_sum(gates, -1, keepdims=True), 1e-9)

    if padding_mask is None:
        valid = tf.ones_like(expert_index, dtype=tf.bool)
    else:
        valid = tf.broadcast_to(tf.cast(padding_mask, tf.bool)[..., None], tf.shape(expert_index))

    tokens = tf.shape(expert_index)[1]
    if priority == "probability":
        # Tokens of each group ranked by top-1 probability (padding last).
        # A NaN probability (non-finite token) would scramble the order of the others.
        top1 = tf.stop_gradient(gates[..., 0])
        score = tf.where(tf.logical_and(valid[..., 0], tf.math.is_finite(top1)), top1, -1.0)
        order = tf.argsort(score, axis=1, direction="DESCENDING", stable=True)
        token_rank = tf.argsort(order, axis=1, stable=True)
    else:
        token_rank = _token_order(tokens, rows_per_group)[None, :]
    rank = _assignment_rank(tf.cast(token_rank, tf.int32), top_k, priority)
    position = _positions_in_expert(
        tf.stop_gradient(expert_index),
        valid,
        tf.broadcast_to(rank, tf.shape(expert_index)),
        num_experts,
    )

    kept = tf.logical_and(valid, position < capacity)
    combine_weight = tf.where(kept, gates, tf.zeros_like(gates))  # not `* kept`: NaN * 0 is NaN
    return RoutingInstructions(expert_index, position, valid, kept, combine_weight, capacity)
