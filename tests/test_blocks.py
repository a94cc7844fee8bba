"""Transformer building blocks of the model zoo: norms, position buckets, attention, FFN."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmoe.layers import (
    DenseFeedForward,
    MoeFeedForward,
    RelativePositionBias,
    RMSNorm,
    SwitchFeedForward,
    T5Attention,
    Top2FeedForward,
    TransformerBlock,
    TransformerStack,
    is_sparse_layer,
    relative_position_bucket,
)


def _reference_bucket(rel, bidirectional, num_buckets=32, max_distance=128):
    """Hugging Face `_relative_position_bucket`, element by element in float32."""
    out = 0
    if bidirectional:
        num_buckets //= 2
        out += num_buckets if rel > 0 else 0
        rel = abs(rel)
    else:
        rel = -min(rel, 0)
    max_exact = num_buckets // 2
    if rel < max_exact:
        return out + rel
    large = np.float32(np.log(np.float32(rel) / np.float32(max_exact)))
    large = large / np.float32(math.log(max_distance / max_exact))
    large = max_exact + int(large * np.float32(num_buckets - max_exact))
    return out + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_matches_reference(bidirectional):
    rel = np.arange(-300, 301)
    got = np.asarray(relative_position_bucket(rel, bidirectional))
    want = np.array([_reference_bucket(int(r), bidirectional) for r in rel])
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() < 32


def test_relative_position_bias_shape_and_offset():
    layer = RelativePositionBias(3, bidirectional=False, embeddings_initializer="random_normal")
    layer.build()
    full = np.asarray(layer(np.arange(6), np.arange(6)))
    assert full.shape == (1, 3, 6, 6)
    # Query 4 of a cached decode step sees the same bias row as in the full pass.
    row = np.asarray(layer(np.arange(1) + 4, np.arange(6)))
    np.testing.assert_allclose(row[0, :, 0], full[0, :, 4])


def test_rms_norm_matches_numpy_and_keeps_float32_statistics():
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    layer = RMSNorm()
    y = np.asarray(layer(x))
    want = x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = RMSNorm()
    assert layer(x).dtype == "bfloat16" and layer.weights[0].dtype == "float32"
    # The scale is applied in float32, not rounded to bfloat16 (where 1 + 2**-10 is 1):
    # some outputs must then round differently from those of a scale of exactly 1.
    at_one = np.asarray(tf.cast(layer(x), "float32"))
    layer.scale.assign(np.full([8], 1 + 2**-10, "float32"))
    assert np.any(np.asarray(tf.cast(layer(x), "float32")) != at_one)


def test_attention_has_no_scaling_and_cache_matches_full_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    layer = T5Attention(num_heads=2, key_value_dim=4)
    out = np.asarray(layer(x))
    q, k, v, o = (np.asarray(w) for w in (layer.q, layer.k, layer.v, layer.o))
    heads = lambda t: t.reshape(2, 5, 2, 4)  # noqa: E731
    scores = np.einsum("bqnd,bknd->bnqk", heads(x @ q), heads(x @ k))
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    want = np.einsum("bnqk,bknd->bqnd", weights, heads(x @ v)).reshape(2, 5, 8) @ o
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)

    causal = np.where(np.tril(np.ones((5, 5), bool)), 0.0, -1e9)[None, None]
    full = np.asarray(layer(x, attention_bias=causal))
    cache = np.zeros((2, 2, 5, 2, 4), "float32")
    steps = []
    for i in range(5):
        bias = np.where(np.arange(5) <= i, 0.0, -1e9)[None, None, None]
        y, cache = layer(x[:, i : i + 1], attention_bias=bias, cache=cache, cache_update_index=i)
        steps.append(np.asarray(y))
    np.testing.assert_allclose(np.concatenate(steps, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gated", [False, True])
def test_dense_feed_forward_weights(gated):
    layer = DenseFeedForward(32, activation="gelu", gated=gated)
    y = layer(np.ones((2, 3, 8), "float32"), padding_mask=np.ones((2, 3), bool))
    assert y.shape == (2, 3, 8)
    names = sorted(w.path.split("/")[-1] for w in layer.weights)
    assert names == (["wi_0", "wi_1", "wo"] if gated else ["wi", "wo"])
    assert layer.count_params() == 8 * 32 * (3 if gated else 2)


def test_sparse_step_rule_matches_hugging_face():
    def sparse(n, step):
        return [i for i in range(n) if is_sparse_layer(i, step)]

    assert sparse(12, 0) == []
    assert sparse(12, 1) == list(range(12))
    assert sparse(12, 2) == [1, 3, 5, 7, 9, 11]
    assert sparse(12, 4) == [1, 5, 9]
    assert sparse(2, 2) == [1]
    with pytest.raises(ValueError, match="sparse_step"):
        is_sparse_layer(0, -1)


def test_block_picks_the_feed_forward_layer():
    def feed_forward(**kwargs):
        return TransformerBlock(2, 8, 16, **kwargs).feed_forward

    assert isinstance(feed_forward(), DenseFeedForward)
    assert type(feed_forward(num_experts=4)) is SwitchFeedForward
    assert type(feed_forward(num_experts=4, top_k=2)) is Top2FeedForward
    generic = feed_forward(num_experts=4, top_k=3)
    assert type(generic) is MoeFeedForward and generic.top_k == 3
    # The layer keeps its plain name (weight paths); the metrics take `metrics_name`.
    sparse = feed_forward(num_experts=4, metrics_name="decoder_block_1_feed_forward")
    assert sparse.name == "feed_forward"
    assert sparse.routing_tracker.name == "decoder_block_1_feed_forward"
    with pytest.raises(ValueError, match="top_k"):
        feed_forward(num_experts=4, top_k=0)
    with pytest.raises(ValueError, match="num_experts"):
        feed_forward(num_experts=-1)
    with pytest.raises(ValueError, match="moe_options"):
        feed_forward(num_experts=4, moe_options={"capacity": 1})


def test_stack_places_sparse_layers_and_round_trips_config():
    stack = TransformerStack(
        4, 2, 8, 32, causal=True, use_cross_attention=True, num_experts=4, sparse_step=2, top_k=2
    )
    stack.build((None, None, 16))
    assert stack.sparse_layers == [1, 3]
    assert isinstance(stack.blocks[1].feed_forward, Top2FeedForward)
    assert isinstance(stack.blocks[0].feed_forward, DenseFeedForward)
    clone = TransformerStack.from_config(stack.get_config())
    clone.build((None, None, 16))
    assert clone.count_params() == stack.count_params()
    block = TransformerBlock.from_config(stack.blocks[1].get_config())
    assert block.is_sparse and block.use_cross_attention
