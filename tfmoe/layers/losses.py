"""Auxiliary router losses: load balancing (Switch / GShard) and router z-loss (ST-MoE).

Both are computed per MoE layer, in float32, and ignore padding tokens.
"""

import tensorflow as tf


def _as_groups(tensor, inner_rank):
    """Reshapes `[..., *inner]` to `[groups, *inner]` (all leading dims folded into groups)."""
    shape = tf.shape(tensor)
    inner = [
        tensor.shape[i] if tensor.shape[i] is not None else shape[i]
        for i in range(tensor.shape.rank - inner_rank, tensor.shape.rank)
    ]
    return tf.reshape(tensor, [-1] + inner)


def _token_mask(padding_mask, like):
    """float32 `[groups, tokens]` mask: 1 for real tokens, 0 for padding."""
    if padding_mask is None:
        return tf.ones(tf.shape(like)[:2], tf.float32)
    return tf.cast(_as_groups(tf.convert_to_tensor(padding_mask), 1), tf.float32)


def load_balancing_loss(router_probs, expert_indices, padding_mask=None):
    """Switch Transformer load-balancing loss.

    `num_experts**2 * mean_{groups, experts}(f * P)` where, per group, `f[e]` is the
    fraction of tokens routed to expert `e` (a token counts once per expert it picked)
    and `P[e]` the mean router probability of expert `e`. Uniform top-1 routing scores
    1.0, uniform top-k routing scores k.

    Args:
      router_probs: `[..., tokens, num_experts]` softmax probabilities.
      expert_indices: `[..., tokens, k]` integer expert choices.
      padding_mask: optional `[..., tokens]`, true/1 for real tokens. Padding tokens
        count neither in `f` nor in `P`; groups with no real token are ignored.

    Returns:
      Scalar float32.
    """
    router_probs = tf.convert_to_tensor(router_probs)
    expert_indices = tf.convert_to_tensor(expert_indices)
    if router_probs.shape.rank is None or router_probs.shape.rank < 2:
        raise ValueError(
            "`router_probs` must have shape [..., tokens, num_experts]; "
            f"got shape {router_probs.shape}."
        )
    if expert_indices.shape.rank != router_probs.shape.rank:
        raise ValueError(
            "`expert_indices` must have shape [..., tokens, k] with the same leading "
            f"dims as `router_probs` {router_probs.shape}; got {expert_indices.shape}."
        )
    if not expert_indices.dtype.is_integer:
        raise ValueError(f"`expert_indices` must be integer, got {expert_indices.dtype}.")
    num_experts = router_probs.shape[-1]
    if num_experts is None:
        raise ValueError("`router_probs` needs a static last dimension (num_experts).")

    probs = tf.cast(_as_groups(router_probs, 2), tf.float32)  # [G, T, E]
    indices = _as_groups(expert_indices, 2)  # [G, T, k]
    mask = _token_mask(padding_mask, probs)  # [G, T]
    tokens_per_group = tf.reduce_sum(mask, axis=1, keepdims=True)  # [G, 1]

    # Per-group count of (real) tokens that picked each expert, by segment sum.
    groups = tf.shape(indices)[0]
    segment = tf.cast(indices, tf.int32) + num_experts * tf.range(groups)[:, None, None]
    picked = tf.math.unsorted_segment_sum(
        tf.broadcast_to(mask[..., None], tf.shape(segment)), segment, groups * num_experts
    )
    fraction_routed = tf.math.divide_no_nan(
        tf.reshape(picked, [groups, num_experts]), tokens_per_group
    )  # [G, E]
    mean_prob = tf.math.divide_no_nan(
        tf.einsum("gte,gt->ge", probs, mask), tokens_per_group
    )  # [G, E]
    nonempty_groups = tf.reduce_sum(tf.cast(tokens_per_group > 0, tf.float32))
    total = tf.reduce_sum(fraction_routed * mean_prob)
    return float(num_experts) * tf.math.divide_no_nan(total, nonempty_groups)


def router_z_loss(router_logits, padding_mask=None):
    """Router z-loss (ST-MoE): mean over tokens of `logsumexp(logits)**2`.

    Args:
      router_logits: `[..., tokens, num_experts]` pre-softmax router logits.
      padding_mask: optional `[..., tokens]`, true/1 for real tokens; padding is ignored.

    Returns:
      Scalar float32.
    """
    router_logits = tf.convert_to_tensor(router_logits)
    if router_logits.shape.rank is None or router_logits.shape.rank < 2:
        raise ValueError(
            "`router_logits` must have shape [..., tokens, num_experts]; "
            f"got shape {router_logits.shape}."
        )
    logits = tf.cast(_as_groups(router_logits, 2), tf.float32)
    squared = tf.square(tf.reduce_logsumexp(logits, axis=-1))  # [G, T]
    mask = _token_mask(padding_mask, logits)
    return tf.math.divide_no_nan(tf.reduce_sum(squared * mask), tf.reduce_sum(mask))
