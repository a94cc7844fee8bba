"""Routing instructions: capacity, priority, padding."""

import numpy as np
import pytest
import tensorflow as tf

from tfmoe.layers import expert_capacity, route_top_k


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


def test_position_priority_and_capacity():
    # 5 tokens all prefer expert 1; capacity 2: the first two are kept, in order.
    routing = route_top_k(_probs_for([1, 1, 1, 1, 1], 3), k=1, capacity=2)
    np.testing.assert_array_equal(routing.position[0, :, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(routing.kept[0, :, 0], [True, True, False, False, False])
    assert np.all(routing.combine_weight.numpy()[0, 2:] == 0)


def test_top2_second_choices_come_after_all_first_choices():
    # Token 0 picks (0 then 1); tokens 1, 2 pick 1 first. Expert 1, capacity 2: the first
    # choices of tokens 1 and 2 must win over token 0's second choice.
    routing = route_top_k(_probs_for([0, 1, 1], 3, second=[1, 0, 0]), k=2, capacity=2)
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
    routing = route_top_k(probs, k=2, capacity=100)
    index = routing.expert_index.numpy()
    assert np.all(index[..., 0] != index[..., 1])


def test_probability_priority_serves_confident_tokens_first():
    probs = np.full([1, 3, 2], 0.0, np.float32)
    probs[0, :, 0] = [0.6, 0.9, 0.7]
    probs[0, :, 1] = 1 - probs[0, :, 0]
    routing = route_top_k(tf.constant(probs), k=1, capacity=1, priority="probability")
    np.testing.assert_array_equal(routing.kept.numpy()[0, :, 0], [False, True, False])
    by_position = route_top_k(tf.constant(probs), k=1, capacity=1)
    np.testing.assert_array_equal(by_position.kept.numpy()[0, :, 0], [True, False, False])


def test_padding_takes_no_capacity():
    mask = tf.constant([[False, False, True, True]])
    routing = route_top_k(_probs_for([0, 0, 0, 0], 2), k=1, capacity=2, padding_mask=mask)
    np.testing.assert_array_equal(routing.kept.numpy()[0, :, 0], [False, False, True, True])
    np.testing.assert_array_equal(routing.position.numpy()[0, 2:, 0], [0, 1])


def test_bad_priority():
    with pytest.raises(ValueError, match="priority"):
        route_top_k(_probs_for([0], 2), k=1, capacity=1, priority="random")
