"""Auxiliary loss formulas on hand-computed cases."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfmoe.layers import load_balancing_loss, router_z_loss


def test_uniform_top1_routing_scores_one():
    # 4 experts, 8 tokens, each expert gets 2 tokens, probabilities uniform.
    probs = np.full([8, 4], 0.25, np.float32)
    indices = np.array([0, 1, 2, 3, 0, 1, 2, 3], np.int32)[:, None]
    assert float(load_balancing_loss(probs, indices)) == pytest.approx(1.0, abs=1e-6)


def test_uniform_top2_routing_scores_k():
    probs = np.full([2, 8, 4], 0.25, np.float32)  # 2 groups
    first = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    indices = np.stack([first, (first + 1) % 4], -1)[None].repeat(2, 0).astype(np.int32)
    assert float(load_balancing_loss(probs, indices)) == pytest.approx(2.0, abs=1e-6)


def test_hand_computed_imbalanced_case():
    # 2 experts, 4 tokens: 3 routed to expert 0, 1 to expert 1.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], np.float32)
    indices = np.array([[0], [0], [0], [1]], np.int32)
    f = np.array([0.75, 0.25])
    p = probs.mean(0)  # [0.65, 0.35]
    expected = 2**2 * np.mean(f * p)  # = 2 * (0.4875 + 0.0875) = 1.15
    assert expected == pytest.approx(1.15)
    assert float(load_balancing_loss(probs, indices)) == pytest.approx(expected, rel=1e-6)


def test_loss_is_mean_over_groups_not_pooled():
    # Group 0 sends everything to expert 0, group 1 everything to expert 1: each group
    # is maximally imbalanced (score 2), although pooled over groups it looks balanced.
    probs = np.stack([np.tile([[1.0, 0.0]], [4, 1]), np.tile([[0.0, 1.0]], [4, 1])])
    indices = np.stack([np.zeros([4, 1]), np.ones([4, 1])]).astype(np.int32)
    assert float(load_balancing_loss(probs.astype(np.float32), indices)) == pytest.approx(2.0)


def test_padding_tokens_are_excluded():
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]], np.float32)
    indices = np.array([[[0], [1], [0]]], np.int32)
    mask = np.array([[1, 1, 0]])
    masked = load_balancing_loss(probs, indices, padding_mask=mask)
    unpadded = load_balancing_loss(probs[:, :2], indices[:, :2])
    assert float(masked) == pytest.approx(float(unpadded), rel=1e-6)
    # A group made only of padding neither counts nor produces NaN.
    all_pad = load_balancing_loss(
        np.concatenate([probs, probs]),
        np.concatenate([indices, indices]),
        padding_mask=np.array([[1, 1, 0], [0, 0, 0]]),
    )
    assert float(all_pad) == pytest.approx(float(unpadded), rel=1e-6)


def test_load_balancing_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expert_indices"):
        load_balancing_loss(np.ones([4, 2], np.float32), np.zeros([2, 4, 1], np.int32))
    with pytest.raises(ValueError, match="expert_indices"):
        load_balancing_loss(np.ones([4, 2], np.float32), np.zeros([4, 1], np.float32))


def test_z_loss_hand_computed():
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]], np.float32)
    # logsumexp: log(2), log(4) -> mean of squares.
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2
    assert float(router_z_loss(logits)) == pytest.approx(expected, rel=1e-6)


def test_z_loss_uses_logits_and_ignores_padding():
    logits = tf.constant([[[10.0, 10.0], [0.0, 0.0]]])
    only_real = router_z_loss(logits[:, 1:])
    masked = router_z_loss(logits, padding_mask=[[False, True]])
    assert float(masked) == pytest.approx(float(only_real), rel=1e-6)
    # Shifting logits changes z-loss (it is not a function of the probabilities).
    assert float(router_z_loss(logits + 5.0)) > float(router_z_loss(logits))
