"""Routing instructions: capacity, priority, padding."""

import numpy as np
import pytest
import tensorflow as tf

from tfmoe.layers import expert_capacity, route_top_k
from tfmoe.layers.routing import routing_group_shape


def _probs_for(choices, num_experts, second=None):
    """One group whose router prefers `choices[t]` (and `second[t]` next) for token t."""
    probs = np.full([len(choices), num_experts], 0.01, np.float32)
    for t, e in enumerate(choices):
        probs[t, e] = 0.9 - 0.01 * t  # later tokens slightly less confident
        if second is not None:
            probs[t, second[t]] = 0.05
    probs /= probs.sum(-1, keepdims=True)
    return tf.constant(probs[None])


def test_capacity_formula():
    assert expert_capacity(256, 1.25, 8) == 40
    assert expert_capacity(256, 1.0, 128) == 2
    assert expert_capacity(10, 1.0, 4) == 3  # ceil(2.5)
    assert expert_capacity(256, 1.1, 8) == 36  # ceil(35.2), no float noise
    assert expert_capacity(3, 0.1, 64) == 1  # at least one slot
    assert int(expert_capacity(tf.constant(10), 1.0, 4)) == 3
    # Minimum capacity (flaxformer / Mesh TF: 4), but never more than the group's tokens.
    assert expert_capacity(64, 1.25, 32, min_capacity=4) == 4
    assert expert_capacity(64, 1.25, 32, min_capacity=4, max_capacity=2) == 2
    assert expert_capacity(1024, 1.25, 8, min_capacity=4, max_capacity=1024) == 160
    assert int(expert_capacity(tf.constant(64), 1.25, 32, 4, max_capacity=tf.constant(3))) == 3


@pytest.mark.parametrize(
    "batch, seq, group_size, expected",
    [
        (16, 64, 1024, (16, 64)),  # the whole batch
        (16, 64, 256, (4, 64)),  # 4 rows per group
        (6, 64, 256, (3, 64)),  # the largest divisor of the batch that fits
        (7, 64, 256, (1, 64)),  # prime batch: one row per group
        (3, 64, 32, (1, 32)),  # rows longer than a group: halves of rows
        (2, 1000, 768, (1, 500)),  # the largest divisor of the length that fits
        (5, 1, 1024, (5, 1)),  # one token per row (cached generation): the whole batch
    ],
)
def test_routing_group_shape(batch, seq, group_size, expected):
    assert routing_group_shape(batch, seq, group_size) == expected
    dynamic = routing_group_shape(tf.constant(batch), tf.constant(seq), group_size)
    assert tuple(int(v) for v in dynamic) == expected


def test_position_priority_and_capacity():
    # 5 tokens all prefer expert 1; capacity 2: the first two are kept, in order.
    routing = route_top_k(_probs_for([1, 1, 1, 1, 1], 3), top_k=1, capacity=2)
    np.testing.assert_array_equal(routing.position[0, :, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(routing.kept[0, :, 0], [True, True, False, False, False])
    assert np.all(routing.combine_weight.numpy()[0, 2:] == 0)


def test_top2_second_choices_come_after_all_first_choices():
    # Token 0 picks (0 then 1); tokens 1, 2 pick 1 first. Expert 1, capacity 2: the first
    # choices of tokens 1 and 2 must win over token 0's second choice.
    routing = route_top_k(_probs_for([0, 1, 1], 3, second=[1, 0, 0]), top_k=2, capacity=2)
    index, kept = routing.expert_index.numpy()[0], routing.kept.numpy()[0]
    np.testing.assert_array_equal(index[:, 0], [0, 1, 1])
    assert index[0, 1] == 1 and not kept[0, 1]
    assert kept[1, 0] and kept[2, 0]
    # Second choices of tokens 1 and 2 go to expert 0 after token 0's first choice.
    np.testing.assert_array_equal(routing.position.numpy()[0, 1:, 1], [1, 2])
    np.testing.assert_array_equal(kept[1:, 1], [True, False])
    gates = routing.combine_weight.numpy()[0]
    assert gates[1].sum() == pytest.approx(1.0, abs=1e-6)  # renormalised top-2 gates


def test_second_expert_is_never_the_first():
    probs = tf.nn.softmax(tf.random.stateless_normal([3, 50, 8], seed=[1, 2]))
    routing = route_top_k(probs, top_k=2, capacity=100)
    index = routing.expert_index.numpy()
    assert np.all(index[..., 0] != index[..., 1])


def test_probability_priority_serves_confident_tokens_first():
    probs = np.full([1, 3, 2], 0.0, np.float32)
    probs[0, :, 0] = [0.6, 0.9, 0.7]
    probs[0, :, 1] = 1 - probs[0, :, 0]
    routing = route_top_k(tf.constant(probs), top_k=1, capacity=1, priority="probability")
    np.testing.assert_array_equal(routing.kept.numpy()[0, :, 0], [False, True, False])
    by_position = route_top_k(tf.constant(probs), top_k=1, capacity=1)
    np.testing.assert_array_equal(by_position.kept.numpy()[0, :, 0], [True, False, False])


def test_padding_takes_no_capacity():
    mask = tf.constant([[False, False, True, True]])
    routing = route_top_k(_probs_for([0, 0, 0, 0], 2), top_k=1, capacity=2, padding_mask=mask)
    np.testing.assert_array_equal(routing.kept.numpy()[0, :, 0], [False, False, True, True])
    np.testing.assert_array_equal(routing.position.numpy()[0, 2:, 0], [0, 1])


def test_groups_of_several_rows_are_served_position_major():
    # 2 rows x 3 positions in one group, every token prefers expert 0, capacity 3:
    # position 0 of both rows, then position 1 of row 0.
    probs = tf.reshape(_probs_for([0] * 6, 2), [1, 6, 2])
    routing = route_top_k(probs, top_k=1, capacity=3, rows_per_group=2)
    kept = routing.kept.numpy()[0, :, 0].reshape(2, 3)
    np.testing.assert_array_equal(kept, [[True, True, False], [True, False, False]])


def test_token_priority_places_both_choices_of_a_token_first():
    # Same set-up as the GShard test above: with "token" priority token 0's second
    # choice (expert 1) comes before the first choices of the later tokens 1 and 2.
    routing = route_top_k(
        _probs_for([0, 1, 1], 3, second=[1, 0, 0]), top_k=2, capacity=2, priority="token"
    )
    kept = routing.kept.numpy()[0]
    assert kept[0, 0] and kept[0, 1]  # both choices of token 0
    assert kept[1, 0] and not kept[2, 0]  # expert 1 is full after token 1
    np.testing.assert_array_equal(routing.position.numpy()[0, :, 0], [0, 1, 2])


@pytest.mark.parametrize("k", [1, 2])
def test_token_priority_routing_never_depends_on_later_positions(k):
    rows, seq, experts = 3, 8, 4
    logits = tf.random.stateless_normal([1, rows * seq, experts], seed=[k, 5])
    mask = tf.ones([1, rows * seq], tf.bool)

    def route(logits, priority):
        return route_top_k(
            tf.nn.softmax(logits), k, 4 * k, mask, priority=priority, rows_per_group=rows
        )

    def changed_earlier(priority):
        """Whether changing positions >= t of row 1 alone changes any earlier routing."""
        base = route(logits, priority)
        for t in range(1, seq):
            noise = np.zeros([1, rows, seq, experts], np.float32)
            noise[0, 1, t:] = np.random.default_rng(t).normal(size=[seq - t, experts]) * 5
            other = route(logits + tf.reshape(noise, logits.shape), priority)
            earlier = np.arange(rows * seq).reshape(rows, seq)[:, :t].ravel()
            for field in ("expert_index", "kept", "combine_weight"):
                a = getattr(base, field).numpy()[0, earlier]
                b = getattr(other, field).numpy()[0, earlier]
                if not np.allclose(a, b):
                    return True
        return False

    assert not changed_earlier("token")
    # GShard's choices-first order is causal for top-1 only: the test can fail.
    assert changed_earlier("position") == (k == 2)


def test_bad_priority():
    with pytest.raises(ValueError, match="priority"):
        route_top_k(_probs_for([0], 2), top_k=1, capacity=1, priority="random")
