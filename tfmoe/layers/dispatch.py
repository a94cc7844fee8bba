"""Dispatch (tokens -> expert buffers) and combine (expert outputs -> tokens).

Two implementations with identical results (up to float summation order):

- `GatherDispatcher`: index arithmetic + `tf.gather`. Cost O(tokens * hidden); no
  `[tokens, experts, capacity]` tensor is ever built. Best on CPU and GPU.
- `EinsumDispatcher`: one-hot dispatch/combine tensors `[groups, seq, experts, capacity]`
  and einsums (Mesh-TensorFlow / GShard style). Only dense matmuls with static shapes:
  the TPU-friendly choice.

Both lay expert inputs out as `[num_experts, groups * capacity, hidden]`, slot
`(g, c)` of expert `e` at row `g * capacity + c`, so the experts' batched matmuls see
the same tensor either way. Empty slots hold zeros.
"""

import tensorflow as tf

DISPATCH_MODES = ("auto", "gather", "einsum")


def resolve_dispatch(mode):
    """`"auto"` -> `"einsum"` on TPU (inside a TPUStrategy or with TPU devices), else `"gather"`."""
    if mode not in DISPATCH_MODES:
        raise ValueError(f"`dispatch` must be one of {DISPATCH_MODES}, got {mode!r}.")
    if mode != "auto":
        return mode
    strategy = tf.distribute.get_strategy()
    if "TPU" in type(strategy).__name__ or tf.config.list_logical_devices("TPU"):
        return "einsum"
    return "gather"


class GatherDispatcher:
    """Sparse dispatch by slot indices.

    Every kept assignment `(g, s, j)` owns slot
    `expert_index * (groups * capacity) + g * capacity + position`. Dropped or padding
    assignments point at one extra all-zero slot past the end.
    """

    def __init__(self, instructions, num_experts):
        self.instructions = instructions
        self.num_experts = num_experts
        index = instructions.expert_index                                  # [G, S, k]
        shape = tf.shape(index)
        self.groups, self.seq_len = shape[0], shape[1]
        capacity = instructions.capacity
        self.num_slots = num_experts * self.groups * capacity
        group_offset = tf.range(self.groups)[:, None, None] * capacity
        slot = index * (self.groups * capacity) + group_offset + instructions.position
        self.slot = tf.where(instructions.kept, slot, self.num_slots)     # [G, S, k]

    def dispatch(self, inputs):
        """`[G, S, H]` -> `[E, G * capacity, H]`."""
        hidden = inputs.shape[-1]
        # token_for_slot[slot] = 1 + flat token index, 0 for an empty slot.
        token_ids = tf.range(1, self.groups * self.seq_len + 1)
        token_ids = tf.broadcast_to(
            tf.reshape(token_ids, [self.groups, self.seq_len, 1]), tf.shape(self.slot))
        token_for_slot = tf.scatter_nd(
            tf.reshape(self.slot, [-1, 1]), tf.reshape(token_ids, [-1]),
            shape=[self.num_slots + 1])[:-1]
        source = tf.concat(
            [tf.zeros([1, hidden], inputs.dtype), tf.reshape(inputs, [-1, hidden])], 0)
        expert_inputs = tf.gather(source, token_for_slot)
        return tf.reshape(expert_inputs, [self.num_experts, -1, hidden])

    def combine(self, expert_outputs):
        """`[E, G * capacity, H]` -> `[G, S, H]`, weighted by the gates."""
        hidden = expert_outputs.shape[-1]
        flat = tf.concat([tf.reshape(expert_outputs, [-1, hidden]),
                          tf.zeros([1, hidden], expert_outputs.dtype)], 0)
        weights = tf.cast(self.instructions.combine_weight, expert_outputs.dtype)
        if self.slot.shape[-1] == 1:
            picked = tf.gather(flat, self.slot[..., 0])                    # [G, S, H]
            return picked * weights
        picked = tf.gather(flat, self.slot)                                # [G, S, k, H]
        return tf.einsum("gskh,gsk->gsh", picked, weights)


class EinsumDispatcher:
    """Dense one-hot dispatch/combine tensors `[G, S, E, C]` (static shapes, TPU)."""

    def __init__(self, instructions, num_experts):
        self.instructions = instructions
        self.num_experts = num_experts
        capacity = instructions.capacity
        kept = tf.cast(instructions.kept, tf.float32)
        expert_one_hot = tf.one_hot(instructions.expert_index, num_experts)  # [G, S, k, E]
        slot_one_hot = tf.one_hot(                                            # [G, S, k, C]
            tf.where(instructions.kept, instructions.position, -1), capacity)
        self.dispatch_mask = tf.einsum(
            "gske,gskc,gsk->gsec", expert_one_hot, slot_one_hot, kept)
        self.combine_tensor = tf.einsum(
            "gske,gskc,gsk->gsec", expert_one_hot, slot_one_hot,
            instructions.combine_weight)

    def dispatch(self, inputs):
        """`[G, S, H]` -> `[E, G * capacity, H]`."""
        mask = tf.cast(self.dispatch_mask, inputs.dtype)
        expert_inputs = tf.einsum("gsec,gsh->egch", mask, inputs)
        return tf.reshape(expert_inputs, [self.num_experts, -1, inputs.shape[-1]])

    def combine(self, expert_outputs):
        """`[E, G * capacity, H]` -> `[G, S, H]`, weighted by the gates."""
        combine = tf.cast(self.combine_tensor, expert_outputs.dtype)
        shape = tf.shape(combine)
        outputs = tf.reshape(expert_outputs,
                             [self.num_experts, shape[0], shape[3], expert_outputs.shape[-1]])
        return tf.einsum("gsec,egch->gsh", combine, outputs)


def make_dispatcher(mode, instructions, num_experts):
    """Returns a `GatherDispatcher` or `EinsumDispatcher` for a resolved mode."""
    if mode == "gather":
        return GatherDispatcher(instructions, num_experts)
    if mode == "einsum":
        return EinsumDispatcher(instructions, num_experts)
    raise ValueError(f"`dispatch` must be 'gather' or 'einsum' here, got {mode!r}.")
