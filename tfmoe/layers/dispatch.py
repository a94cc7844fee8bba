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

import functools

import tensorflow as tf

DISPATCH_MODES = ("auto", "gather", "einsum")


@functools.lru_cache(maxsize=None)
def _has_tpu_devices():
    """Whether TPU devices are visible (fixed once TensorFlow has set up its devices)."""
    return bool(tf.config.list_logical_devices("TPU"))


def resolve_dispatch(mode):
    """`"auto"` -> `"einsum"` on TPU (inside a TPUStrategy or with TPU devices), else `"gather"`."""
    if mode not in DISPATCH_MODES:
        raise ValueError(f"`dispatch` must be one of {DISPATCH_MODES}, got {mode!r}.")
    if mode != "auto":
        return mode
    if "TPU" in type(tf.distribute.get_strategy()).__name__ or _has_tpu_devices():
        return "einsum"
    return "gather"


class GatherDispatcher:
    """Sparse dispatch by slot indices, with gather-only gradients.

    Every kept assignment `(g, s, j)` owns slot
    `expert_index * (groups * capacity) + g * capacity + position`. Dispatch and
    combine are transposes of each other, so each one's gradient is a gather in the
    other direction: no scatter-add over `[tokens, hidden]` in either pass (the
    autodiff gradient of `tf.gather` is an `UnsortedSegmentSum`, slow on CPU).

    Empty slots read token 0: the experts compute something for them, but no token
    ever combines from an empty slot and their output gradient is zero. Dropped
    assignments read slot 0 with weight zero.
    """

    def __init__(self, instructions, num_experts):
        self.instructions = instructions
        self.num_experts = num_experts
        index = instructions.expert_index  # [G, S, k]
        shape = tf.shape(index)
        groups, seq_len = shape[0], shape[1]
        k = index.shape[-1]
        capacity = instructions.capacity
        num_slots = num_experts * groups * capacity
        group_offset = tf.range(groups)[:, None, None] * capacity
        slot = index * (groups * capacity) + group_offset + instructions.position
        # Dropped / padding assignments go to a dummy slot past the end for the
        # scatter below, and read slot 0 (with weight 0) when combining.
        scatter_slot = tf.reshape(tf.where(instructions.kept, slot, num_slots), [-1, 1])
        self.slot = tf.reshape(tf.where(instructions.kept, slot, 0), [-1, k])  # [N, k]
        self.kept = tf.reshape(instructions.kept, [-1, k])  # [N, k]
        token_ids = tf.repeat(tf.range(groups * seq_len), k)
        self.token_for_slot = tf.scatter_nd(  # [M]
            scatter_slot, token_ids, shape=[num_slots + 1]
        )[:-1]
        self._scatter_slot = scatter_slot
        self._num_slots = num_slots
        self.output_shape = [groups, seq_len]

    def _slot_values(self, values):
        """Scatters per-assignment `values` `[N, k]` to per-slot `[M]` (0 for empty slots)."""
        return tf.scatter_nd(
            self._scatter_slot, tf.reshape(values, [-1]), shape=[self._num_slots + 1]
        )[:-1]

    def _gather_by_assignment(self, values, weights):
        """`sum_j weights[n, j] * values[slot[n, j]]`: `[M, H]` -> `[N, H]`.

        One `[N, H]` gather per choice: gathering `[N, k, H]` with 2-D indices is about
        twice as slow on CPU as k 1-D gathers.
        """
        return tf.add_n(
            [
                tf.gather(values, self.slot[:, j]) * weights[:, j : j + 1]
                for j in range(self.slot.shape[-1])
            ]
        )

    def dispatch(self, inputs):
        """`[G, S, H]` -> `[E, G * capacity, H]`."""
        hidden = inputs.shape[-1]
        kept = tf.cast(self.kept, inputs.dtype)

        @tf.custom_gradient
        def dispatch(flat_inputs):
            def grad(d_slots):
                return self._gather_by_assignment(d_slots, tf.cast(kept, d_slots.dtype))

            return tf.gather(flat_inputs, self.token_for_slot), grad

        expert_inputs = dispatch(tf.reshape(inputs, [-1, hidden]))
        return tf.reshape(expert_inputs, [self.num_experts, -1, hidden])

    def combine(self, expert_outputs):
        """`[E, G * capacity, H]` -> `[G, S, H]`, weighted by the gates."""
        hidden = expert_outputs.shape[-1]
        weights = tf.reshape(
            tf.cast(self.instructions.combine_weight, expert_outputs.dtype), tf.shape(self.slot)
        )

        @tf.custom_gradient
        def combine(flat_outputs, weights):
            def grad(d_tokens):
                # Everything in slot space: one gather of the token gradients serves
                # both the expert-output gradient and the gate gradient
                # `d_weights[n, j] = <outputs[slot[n, j]], d_tokens[n]>`.
                d_tokens_by_slot = tf.gather(d_tokens, self.token_for_slot)  # [M, H]
                d_outputs = d_tokens_by_slot * self._slot_values(weights)[:, None]
                d_slot_weight = tf.reduce_sum(flat_outputs * d_tokens_by_slot, -1)  # [M]
                d_weights = tf.gather(d_slot_weight, self.slot)  # [N, k]
                return d_outputs, d_weights * tf.cast(self.kept, d_weights.dtype)

            return self._gather_by_assignment(flat_outputs, weights), grad

        tokens = combine(tf.reshape(expert_outputs, [-1, hidden]), weights)
        return tf.reshape(tokens, self.output_shape + [hidden])


class EinsumDispatcher:
    """Dense one-hot dispatch/combine tensors `[G, S, E, C]` (static shapes, TPU)."""

    def __init__(self, instructions, num_experts):
        self.instructions = instructions
        self.num_experts = num_experts
        capacity = instructions.capacity
        kept = tf.cast(instructions.kept, tf.float32)
        expert_one_hot = tf.one_hot(instructions.expert_index, num_experts)  # [G, S, k, E]
        slot_one_hot = tf.one_hot(  # [G, S, k, C]
            tf.where(instructions.kept, instructions.position, -1), capacity
        )
        self.dispatch_mask = tf.einsum("gske,gskc,gsk->gsec", expert_one_hot, slot_one_hot, kept)
        self.combine_tensor = tf.einsum(
            "gske,gskc,gsk->gsec", expert_one_hot, slot_one_hot, instructions.combine_weight
        )

    def dispatch(self, inputs):
        """`[G, S, H]` -> `[E, G * capacity, H]`."""
        mask = tf.cast(self.dispatch_mask, inputs.dtype)
        expert_inputs = tf.einsum("gsec,gsh->egch", mask, inputs)
        return tf.reshape(expert_inputs, [self.num_experts, -1, inputs.shape[-1]])

    def combine(self, expert_outputs):
        """`[E, G * capacity, H]` -> `[G, S, H]`, weighted by the gates."""
        combine = tf.cast(self.combine_tensor, expert_outputs.dtype)
        shape = tf.shape(combine)
        outputs = tf.reshape(
            expert_outputs, [self.num_experts, shape[0], shape[3], expert_outputs.shape[-1]]
        )
        return tf.einsum("gsec,egch->gsh", combine, outputs)


def make_dispatcher(mode, instructions, num_experts):
    """Returns a `GatherDispatcher` or `EinsumDispatcher` for a resolved mode."""
    if mode == "gather":
        return GatherDispatcher(instructions, num_experts)
    if mode == "einsum":
        return EinsumDispatcher(instructions, num_experts)
    raise ValueError(f"`dispatch` must be 'gather' or 'einsum' here, got {mode!r}.")
