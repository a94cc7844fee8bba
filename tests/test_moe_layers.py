"""SwitchFeedForward / Top2FeedForward behaviour against per-token references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmoe.layers import (
    ExpertFeedForward,
    ExpertVarianceScaling,
    MoeFeedForward,
    SwitchFeedForward,
    Top2FeedForward,
    load_balancing_loss,
    router_z_loss,
)

LAYERS = [SwitchFeedForward, Top2FeedForward]
DISPATCH = ["gather", "einsum"]


def _inputs(batch=3, seq=12, hidden=16, seed=0):
    return tf.random.stateless_normal([batch, seq, hidden], seed=[seed, 1])


def _reference(layer, x, k):
    """Per-token output computed expert by expert in numpy (unlimited capacity)."""
    x = np.asarray(x, np.float64)
    router = np.asarray(layer.router.kernel, np.float64)
    experts = {w.name: np.asarray(w, np.float64) for w in layer.experts.weights}
    logits = x @ router
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    gates = np.take_along_axis(probs, order, -1)
    if k > 1:
        gates = gates / gates.sum(-1, keepdims=True)
    out = np.zeros_like(x)
    for b, s in np.ndindex(*x.shape[:2]):
        for j in range(k):
            e = order[b, s, j]
            # Expert kernels are stored [E, intermediate, hidden]: wi* as [out, in].
            if layer.gated:
                h = np.maximum(experts["wi_0"][e] @ x[b, s], 0) * (experts["wi_1"][e] @ x[b, s])
            else:
                h = np.maximum(experts["wi"][e] @ x[b, s], 0)
            out[b, s] += gates[b, s, j] * (h @ experts["wo"][e])
    return out


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("dispatch", DISPATCH)
def test_unlimited_capacity_matches_per_token_reference(cls, gated, dispatch):
    x = _inputs()
    # Capacity factor = num_experts: every expert can take every token.
    layer = cls(
        4,
        24,
        gated=gated,
        dispatch=dispatch,
        capacity_factor=4.0,
        eval_capacity_factor=4.0,
        init_scale=1.0,
    )
    y = layer(x)
    k = 2 if cls is Top2FeedForward else 1
    np.testing.assert_allclose(y.numpy(), _reference(layer, x, k), atol=1e-4, rtol=1e-4)
    assert float(layer.routing_stats["dropped_fraction"]) == 0.0


def _autodiff_reference(layer, x, k):
    """The layer's output with plain TensorFlow ops and autodiff gradients only.

    Unlimited capacity, expert by expert with masks: no custom gradient anywhere, so
    it checks the hand-written gradients of the router and dispatch/combine, and the
    experts' batched (feature-major) matmuls.
    """
    logits = tf.matmul(x, layer.router.kernel)
    probs = tf.nn.softmax(logits)
    top_gates, order = tf.math.top_k(probs, k)
    if k > 1:
        top_gates = top_gates / tf.reduce_sum(top_gates, -1, keepdims=True)
    out = tf.zeros_like(x)
    for e in range(layer.num_experts):
        gate = tf.reduce_sum(top_gates * tf.cast(tf.equal(order, e), x.dtype), -1, keepdims=True)

        def project_in(kernel):  # stored [E, out, in]
            return tf.matmul(x, kernel[e], transpose_b=True)

        if layer.gated:
            h = tf.nn.relu(project_in(layer.experts.wi_0)) * project_in(layer.experts.wi_1)
        else:
            h = tf.nn.relu(project_in(layer.experts.wi))
        out += gate * (h @ layer.experts.wo[e])
    return out


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("dispatch", DISPATCH)
def test_gradients_match_autodiff_reference(cls, gated, dispatch):
    x = _inputs(batch=3, seq=12, hidden=16, seed=7)
    layer = cls(
        4,
        24,
        gated=gated,
        dispatch=dispatch,
        capacity_factor=4.0,
        init_scale=1.0,
        load_balance_weight=0.0,
    )
    layer.build(x.shape)
    k = 2 if cls is Top2FeedForward else 1
    projection = tf.random.stateless_normal(x.shape, seed=[7, 2])

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn() * projection)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    ours = grads(lambda: layer(x, training=True))
    reference = grads(lambda: _autodiff_reference(layer, x, k))
    names = ["x"] + [v.path for v in layer.trainable_variables]
    for name, a, b in zip(names, ours, reference):
        np.testing.assert_allclose(
            tf.convert_to_tensor(a).numpy(),
            tf.convert_to_tensor(b).numpy(),
            rtol=1e-4,
            atol=1e-4,
            err_msg=name,
        )


def _skewed_layer(cls, dispatch, capacity_factor, hidden=16):
    """A layer whose router sends every token to expert 0 first (and 1 second)."""
    # 64 ReLU units per expert: with 8, about 1 token in 256 has an all-negative hidden
    # layer and a kept token then really outputs zero, which the test would misread.
    layer = cls(
        4,
        64,
        dispatch=dispatch,
        capacity_factor=capacity_factor,
        eval_capacity_factor=capacity_factor,
        init_scale=1.0,
    )
    layer.build((None, None, hidden))
    kernel = np.zeros([hidden, 4], np.float32)
    kernel[0] = [10.0, 5.0, 0.0, 0.0]  # feature 0 is always 1 below
    layer.router.kernel.assign(kernel)
    return layer


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("dispatch", DISPATCH)
def test_overflow_tokens_output_zero_and_are_counted(cls, dispatch):
    x = np.random.default_rng(0).normal(size=[2, 8, 16]).astype(np.float32)
    x[..., 0] = 1.0
    layer = _skewed_layer(cls, dispatch, capacity_factor=1.0)
    y = layer(x, training=True).numpy()
    k = 2 if cls is Top2FeedForward else 1
    capacity = int(np.ceil(8 * k * 1.0 / 4))  # = 2 (switch) or 4 (top-2)
    # Expert 0 keeps the first `capacity` tokens; top-2's second choice (expert 1) too.
    kept_tokens = capacity
    assert np.all(np.abs(y[:, :kept_tokens]).sum(-1) > 0)
    np.testing.assert_array_equal(y[:, kept_tokens:], 0.0)
    dropped = (8 - capacity) * k / (8 * k)
    assert float(layer.routing_stats["dropped_fraction"]) == pytest.approx(dropped)
    fraction = layer.routing_stats["expert_fraction"].numpy()
    assert fraction[0] == pytest.approx(1.0 / k)


@pytest.mark.parametrize("cls", LAYERS)
def test_capacity_factor_switches_between_train_and_eval(cls):
    x = np.random.default_rng(1).normal(size=[1, 8, 16]).astype(np.float32)
    x[..., 0] = 1.0
    layer = _skewed_layer(cls, "gather", capacity_factor=1.0)
    layer.eval_capacity_factor = 4.0
    layer(x, training=True)
    assert float(layer.routing_stats["dropped_fraction"]) > 0
    layer(x, training=False)
    assert float(layer.routing_stats["dropped_fraction"]) == 0.0


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("priority", ["position", "probability"])
def test_gather_and_einsum_agree_values_and_gradients(cls, priority):
    x = _inputs(batch=4, seq=20, hidden=16, seed=3)
    gather = cls(
        8,
        32,
        dispatch="gather",
        capacity_factor=0.75,
        priority=priority,
        gated=True,
        z_loss_weight=1e-3,
    )
    einsum = cls(
        8,
        32,
        dispatch="einsum",
        capacity_factor=0.75,
        priority=priority,
        gated=True,
        z_loss_weight=1e-3,
    )
    gather.build(x.shape)
    einsum.build(x.shape)
    einsum.set_weights(gather.get_weights())

    def grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y)) + tf.add_n(layer.losses)
        return y, tape.gradient(loss, [x] + layer.trainable_variables)

    y_g, g_g = grads(gather)
    y_e, g_e = grads(einsum)
    assert float(gather.routing_stats["dropped_fraction"]) > 0  # capacity really binds
    np.testing.assert_allclose(y_g.numpy(), y_e.numpy(), atol=1e-5)
    for a, b in zip(g_g, g_e):
        np.testing.assert_allclose(
            tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(), atol=1e-4
        )


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("dispatch", DISPATCH)
def test_padding_tokens_zero_output_and_no_effect(cls, dispatch):
    x = _inputs(batch=2, seq=10, seed=5).numpy()
    mask = np.ones([2, 10], bool)
    mask[:, 6:] = False
    layer = cls(4, 16, dispatch=dispatch, capacity_factor=1.0, z_loss_weight=0.1)
    y = layer(x, padding_mask=mask, training=True).numpy()
    losses = [float(v) for v in layer.losses]
    np.testing.assert_array_equal(y[:, 6:], 0.0)
    # Changing the padding tokens changes neither real outputs nor losses.
    x2 = x.copy()
    x2[:, 6:] = 100.0
    y2 = layer(x2, padding_mask=mask, training=True).numpy()
    np.testing.assert_allclose(y2[:, :6], y[:, :6], atol=1e-6)
    np.testing.assert_allclose([float(v) for v in layer.losses], losses, rtol=1e-6)
    # Same as running on the unpadded prefix alone (capacity depends on the static
    # sequence length, so compare with enough capacity for both).
    roomy = cls(4, 16, dispatch=dispatch, capacity_factor=4.0, eval_capacity_factor=4.0)
    roomy.build(x.shape)
    roomy.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        roomy(x, padding_mask=mask).numpy()[:, :6], roomy(x[:, :6]).numpy(), atol=1e-5
    )


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("dispatch", DISPATCH)
def test_non_finite_tokens_affect_only_themselves(cls, dispatch):
    """Padding outputs zero whatever it holds; a NaN / Inf real token only makes its own
    output non-finite, not the rest of its routing group (both rows are one group)."""
    x = _inputs(batch=2, seq=6, seed=3).numpy()
    mask = np.ones([2, 6], bool)
    mask[:, 4:] = False
    layer = cls(4, 16, dispatch=dispatch, eval_capacity_factor=4.0)  # nothing dropped
    clean = layer(x, padding_mask=mask).numpy()
    dirty = x.copy()
    dirty[0, 5] = np.nan  # padding
    dirty[1, 4, :3] = np.inf  # padding
    dirty[1, 1, 7] = np.nan  # a real token
    dirty[0, 2] = np.inf  # a real token
    y = layer(dirty, padding_mask=mask).numpy()
    np.testing.assert_array_equal(y[:, 4:], 0.0)
    finite = np.isfinite(y).all(-1)
    assert not finite[1, 1] and not finite[0, 2]
    others = finite.copy()
    others[1, 1] = others[0, 2] = True
    assert others.all(), np.argwhere(~finite)
    keep = np.ones([2, 6], bool)
    keep[1, 1] = keep[0, 2] = False
    np.testing.assert_allclose(y[keep], clean[keep], atol=1e-6)


@pytest.mark.parametrize("cls", LAYERS)
def test_gather_and_einsum_agree_with_a_nan_token(cls):
    x = _inputs(batch=2, seq=5, seed=4).numpy()
    x[0, 3] = np.nan
    gather = cls(4, 16, dispatch="gather", eval_capacity_factor=1.0)
    einsum = cls(4, 16, dispatch="einsum", eval_capacity_factor=1.0)
    gather.build(x.shape)
    einsum.build(x.shape)
    einsum.set_weights(gather.get_weights())
    a, b = gather(x).numpy(), einsum(x).numpy()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), atol=1e-5)


@pytest.mark.parametrize("cls", LAYERS)
def test_empty_sequences_give_empty_outputs(cls):
    layer = cls(4, 16)
    assert layer(tf.zeros([2, 0, 16])).shape == (2, 0, 16)
    dynamic = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 16])])
    assert dynamic(tf.zeros([2, 0, 16])).shape == (2, 0, 16)
    assert dynamic(tf.zeros([0, 3, 16])).shape == (0, 3, 16)


@pytest.mark.parametrize("cls", LAYERS)
def test_aux_losses_match_formulas_and_are_training_only(cls):
    x = _inputs(seed=7)
    k = 2 if cls is Top2FeedForward else 1
    layer = cls(4, 16, load_balance_weight=0.5, z_loss_weight=0.25)
    layer(x)
    assert layer.losses == []  # inference adds no auxiliary loss
    layer(x, training=True)
    # The whole batch (3 x 12 tokens) is one routing group: the balance is measured on it.
    logits = tf.reshape(layer.router(x), [1, -1, 4])
    probs = tf.nn.softmax(logits)
    _, index = tf.math.top_k(probs, k)
    expected = [
        0.5 * float(load_balancing_loss(probs, index)) / k,
        0.25 * float(router_z_loss(logits)),
    ]
    np.testing.assert_allclose([float(v) for v in layer.losses], expected, rtol=1e-5)
    # With one row per group the balance is averaged over the rows' own fractions.
    per_row = cls(4, 16, load_balance_weight=0.5, z_loss_weight=0.25, group_size=12)
    per_row.build(x.shape)
    per_row.set_weights(layer.get_weights())
    per_row(x, training=True)
    probs = tf.nn.softmax(per_row.router(x))
    _, index = tf.math.top_k(probs, k)
    np.testing.assert_allclose(
        float(per_row.losses[0]), 0.5 * float(load_balancing_loss(probs, index)) / k, rtol=1e-5
    )


@pytest.mark.parametrize("cls", LAYERS)
def test_router_gets_gradients_from_the_main_loss(cls):
    x = _inputs(seed=9)
    layer = cls(4, 16, load_balance_weight=0.0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x, training=True)))
    grad = tape.gradient(loss, layer.router.kernel)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0


def test_router_stays_float32_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = Top2FeedForward(4, 16, z_loss_weight=1e-3)
    x = tf.cast(_inputs(), "bfloat16")
    y = layer(x, training=True)
    assert y.dtype == tf.bfloat16
    assert layer.router.compute_dtype == "float32"
    assert layer.router.kernel.dtype == "float32"
    assert layer.router(x).dtype == tf.float32
    assert layer.experts.compute_dtype == "bfloat16"
    assert all(v.dtype == tf.float32 for v in layer.losses)
    assert np.all(np.isfinite(tf.cast(y, tf.float32).numpy()))


@pytest.mark.parametrize("cls", LAYERS)
def test_keras_round_trip(cls, tmp_path):
    inputs = keras.Input((12, 16))
    mask = keras.Input((12,), dtype="bool")
    outputs = cls(
        4,
        32,
        gated=True,
        capacity_factor=1.0,
        dispatch="gather",
        jitter_noise=0.01,
        z_loss_weight=1e-3,
        priority="probability",
    )(inputs, padding_mask=mask)
    model = keras.Model([inputs, mask], outputs)
    x = _inputs(batch=2, seq=12).numpy()
    m = np.ones([2, 12], bool)
    m[1, 8:] = False
    path = tmp_path / "moe.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(
        model.predict([x, m], verbose=0), restored.predict([x, m], verbose=0)
    )
    layer = restored.layers[-1]
    assert type(layer) is cls and layer.priority == "probability" and layer.gated


def test_generic_top_k_layer_round_trips():
    layer = MoeFeedForward(6, 8, top_k=3)
    clone = MoeFeedForward.from_config(layer.get_config())
    assert clone.top_k == 3


def test_moe_options_are_layer_arguments_and_reach_the_models():
    from tfmoe.layers.moe_feed_forward import MOE_OPTIONS, moe_option_defaults
    from tfmoe.models import SwitchArchitecture

    config = MoeFeedForward(4, 8).get_config()
    assert {name: config[name] for name in MOE_OPTIONS} == moe_option_defaults()
    model_defaults = SwitchArchitecture.argument_defaults()
    assert set(MOE_OPTIONS) <= set(model_defaults)
    assert model_defaults["priority"] is None  # the stack picks it from its causality
    architecture = SwitchArchitecture(16, 8, 2, 8, 1, capacity_factor=2, group_size=64)
    assert type(architecture.moe_options["capacity_factor"]) is float  # as its default
    assert architecture.moe_options["group_size"] == 64
    with pytest.raises(ValueError, match="capacity"):
        SwitchArchitecture(16, 8, 2, 8, 1, capacity=2)


@pytest.mark.parametrize("cls,fixed", [(SwitchFeedForward, 1), (Top2FeedForward, 2)])
def test_fixed_k_layers_refuse_another_top_k(cls, fixed):
    assert cls(4, 8).top_k == cls(4, 8, top_k=fixed).top_k == fixed
    assert cls.from_config(cls(4, 8).get_config()).top_k == fixed
    with pytest.raises(ValueError, match="top_k"):
        cls(4, 8, top_k=3 - fixed)
    with pytest.raises(ValueError, match="num_selected_experts"):
        cls(4, 8, num_selected_experts=2)


def test_init_scale_sets_expert_weight_std():
    layer = SwitchFeedForward(8, 256, init_scale=0.1)
    layer.build((None, None, 128))
    # Fan-in is the hidden size (128) for wi and the intermediate size (256) for wo,
    # although both are stored [E, 256, 128].
    for name, fan_in in (("wi", 128), ("wo", 256)):
        w = getattr(layer.experts, name).numpy()
        assert w.shape == (8, 256, 128)
        assert w.std() == pytest.approx(np.sqrt(0.1 / fan_in), rel=0.05), name
        assert np.abs(w).max() <= 2 * np.sqrt(0.1 / fan_in) / 0.8796 + 1e-6  # truncated


def test_expert_kernel_in_out_layout():
    experts = ExpertFeedForward(3, 12, gated=True)
    x = tf.random.stateless_normal([3, 5, 8], seed=[4, 2])
    y = experts(x)
    assert experts.kernel_names == ("wi_0", "wi_1", "wo")
    kernels = {name: experts.kernel_in_out(name) for name in experts.kernel_names}
    assert [tuple(k.shape) for k in kernels.values()] == [(3, 8, 12), (3, 8, 12), (3, 12, 8)]
    for e in range(3):
        hidden = tf.nn.relu(x[e] @ kernels["wi_0"][e]) * (x[e] @ kernels["wi_1"][e])
        np.testing.assert_allclose(y[e], hidden @ kernels["wo"][e], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expert kernel 'w1'"):
        experts.stored_out_in("w1")


def test_expert_variance_scaling_fan_in_axis():
    init = ExpertVarianceScaling(0.1, seed=1, fan_in_axis=-1)
    assert ExpertVarianceScaling.from_config(init.get_config()).fan_in_axis == -1
    assert float(np.std(init((4, 512, 64)))) == pytest.approx(np.sqrt(0.1 / 64), rel=0.05)
    with pytest.raises(ValueError, match="fan_in_axis"):
        ExpertVarianceScaling(0.1, fan_in_axis=0)


def test_jitter_and_expert_dropout_only_in_training():
    x = _inputs(seed=11)
    layer = SwitchFeedForward(4, 16, jitter_noise=0.3, expert_dropout=0.5, seed=0)
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())
    assert not np.allclose(layer(x, training=True).numpy(), layer(x, training=True).numpy())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_experts=0), "num_experts"),
        (dict(capacity_factor=0.0), "capacity_factor"),
        (dict(eval_capacity_factor=-1.0), "eval_capacity_factor"),
        (dict(capacity_factor=float("inf")), "capacity_factor"),
        (dict(capacity_factor=float("nan")), "capacity_factor"),
        (dict(eval_capacity_factor=float("inf")), "eval_capacity_factor"),
        (dict(init_scale=float("inf")), "init_scale"),
        (dict(load_balance_weight=float("nan")), "load_balance_weight"),
        (dict(dispatch="scatter"), "dispatch"),
        (dict(expert_dropout=1.0), "expert_dropout"),
        (dict(intermediate_dim=0), "intermediate_dim"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, name):
    args = dict(num_experts=4, intermediate_dim=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        SwitchFeedForward(**args)


def test_top2_needs_two_experts():
    with pytest.raises(ValueError, match="num_experts"):
        Top2FeedForward(1, 8)


def test_bad_inputs_name_the_problem():
    layer = SwitchFeedForward(4, 8)
    with pytest.raises(ValueError, match=r"\[batch, seq, hidden\]"):
        layer(tf.zeros([4, 16]))
    layer(tf.zeros([2, 3, 16]))
    with pytest.raises(ValueError, match="hidden size"):
        layer(tf.zeros([2, 3, 8]))
    with pytest.raises(ValueError, match="padding_mask"):
        layer(tf.zeros([2, 3, 16]), padding_mask=tf.ones([2, 4]))


def _batch_matmuls_with_a_transposed_weight(fn, *args):
    """The `BatchMatMul` ops of `fn`'s graph that take a variable operand adjoint."""

    def reads_a_variable(tensor):
        while tensor.op.type in ("Identity", "Cast"):
            tensor = tensor.op.inputs[0]
        return tensor.op.type == "ReadVariableOp"

    graph = tf.function(fn).get_concrete_function(*args).graph
    matmuls = [op for op in graph.get_operations() if op.type.startswith("BatchMatMul")]
    flagged = [
        op.name
        for op in matmuls
        for operand, adjoint in zip(op.inputs, (op.get_attr("adj_x"), op.get_attr("adj_y")))
        if adjoint and reads_a_variable(operand)
    ]
    return matmuls, flagged


@pytest.mark.parametrize("gated", [False, True])
def test_expert_matmuls_never_take_a_transposed_weight(gated):
    """The expert layout's point (see `expert_feed_forward`): no forward or backward
    batched matmul takes a weight operand transposed, the slow form on CPU."""
    experts = ExpertFeedForward(4, 32, gated=gated)
    x = tf.random.stateless_normal([4, 8, 16], seed=[1, 1])
    experts(x)

    def forward_and_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = experts(x)
        return tape.gradient(y, [x] + experts.trainable_variables)

    matmuls, flagged = _batch_matmuls_with_a_transposed_weight(forward_and_backward, x)
    assert len(matmuls) == (9 if gated else 6)
    assert not flagged
    # The check can fail: token-major `x @ wi^T` with the same kernel takes it transposed.
    _, flagged = _batch_matmuls_with_a_transposed_weight(
        lambda x: tf.matmul(x, tf.convert_to_tensor(experts.wo), adjoint_b=True), x
    )
    assert flagged


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("dispatch", DISPATCH)
def test_default_priority_is_causal_in_training_with_pooled_groups(cls, dispatch):
    """Changing positions >= t (of every row) never changes an output before t, with
    4 rows per routing group, capacity factor 0.5 (many drops), training=True."""
    x = _inputs(batch=4, seq=16, hidden=16, seed=21).numpy()

    def layer_with(priority):
        layer = cls(
            8, 32, dispatch=dispatch, capacity_factor=0.5, min_capacity=1, priority=priority, seed=0
        )
        layer.build(x.shape)
        layer.set_weights(reference.get_weights())
        return layer

    reference = cls(8, 32, dispatch=dispatch)
    reference.build(x.shape)

    def changes_the_past(layer):
        base = layer(x, training=True).numpy()
        assert float(layer.routing_stats["dropped_fraction"]) > 0.2  # capacity binds
        for t in range(1, 16, 3):
            changed = x.copy()
            changed[:, t:] = np.random.default_rng(t).normal(size=changed[:, t:].shape)
            if not np.allclose(
                layer(changed, training=True).numpy()[:, :t], base[:, :t], atol=1e-6
            ):
                return True
        return False

    assert not changes_the_past(layer_with("token"))
    # GShard's all-first-choices-first order breaks it for top-2: the test can fail.
    assert changes_the_past(layer_with("position")) == (cls is Top2FeedForward)


def test_pooled_routing_groups_drop_fewer_tokens():
    """The `make demo` shape (16 x 64 tokens, 8 experts, capacity factor 1.25) at init:
    one group per row drops several times more than the default (the whole batch)."""
    x = tf.random.stateless_normal([16, 64, 128], seed=[3, 3])
    pooled = SwitchFeedForward(8, 64)
    pooled.build(x.shape)
    per_row = SwitchFeedForward(8, 64, group_size=64)
    per_row.build(x.shape)
    per_row.set_weights(pooled.get_weights())
    pooled(x, training=True)
    per_row(x, training=True)
    pooled_dropped = float(pooled.routing_stats["dropped_fraction"])
    per_row_dropped = float(per_row.routing_stats["dropped_fraction"])
    assert pooled_dropped < 0.03
    assert per_row_dropped > 3 * pooled_dropped


def test_group_size_and_min_capacity_round_trip_and_are_checked():
    layer = Top2FeedForward(4, 8, group_size=256, min_capacity=2, priority="position")
    clone = Top2FeedForward.from_config(layer.get_config())
    assert (clone.group_size, clone.min_capacity, clone.priority) == (256, 2, "position")
    for name in ("group_size", "min_capacity"):
        with pytest.raises(ValueError, match=name):
            SwitchFeedForward(4, 8, **{name: 0})


def _hugging_face_capacity_reference(layer, x, expert_capacity):
    """Hugging Face Switch Transformers' sparse MLP in numpy: top-1 expert per token;
    a row's tokens claim slots in position order (`cumsum` over the sequence); tokens
    over `expert_capacity` output zero, the others `probability * expert(x)`."""
    logits = np.asarray(x, np.float64) @ np.asarray(layer.router.kernel, np.float64)
    one_hot = np.eye(layer.num_experts)[logits.argmax(-1)]  # [B, S, E]
    kept = ((np.cumsum(one_hot, axis=1) <= expert_capacity) * one_hot).sum(-1) > 0  # [B, S]
    return _reference(layer, x, 1) * kept[..., None], kept


@pytest.mark.parametrize("dispatch", DISPATCH)
@pytest.mark.parametrize("training", [False, True])
def test_expert_capacity_drops_per_sequence_like_hugging_face(dispatch, training):
    """4 rows (one routing group each, never pooled) of 24 tokens, 3 experts, 5 slots
    each per row: the same tokens are kept as Hugging Face's router keeps, in training
    and inference (no capacity factor involved)."""
    x = _inputs(batch=4, seq=24, seed=7)
    layer = SwitchFeedForward(3, 32, dispatch=dispatch, expert_capacity=5, init_scale=3.0)
    layer.build(x.shape)
    want, kept = _hugging_face_capacity_reference(layer, x, 5)
    assert 0.2 < 1 - kept.mean() < 0.5  # capacity binds in every row
    got = layer(x, training=training).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    dropped = float(layer.routing_stats["dropped_fraction"])
    assert dropped == pytest.approx(1 - kept.mean())
    # One token per row (a cached generation step) is never dropped.
    layer(x[:, :1], training=training)
    assert float(layer.routing_stats["dropped_fraction"]) == 0.0


def test_expert_capacity_with_unknown_sequence_length():
    x = _inputs(batch=2, seq=20, seed=8)
    layer = SwitchFeedForward(4, 16, expert_capacity=3, init_scale=3.0)
    layer.build(x.shape)
    dynamic = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 16])])
    want, kept = _hugging_face_capacity_reference(layer, x, 3)
    assert not kept.all()
    np.testing.assert_allclose(dynamic(x).numpy(), want, atol=1e-5)
    assert dynamic(tf.zeros([2, 0, 16])).shape == (2, 0, 16)


def test_expert_capacity_round_trips_and_is_checked():
    from tfmoe.models import SwitchArchitecture

    layer = Top2FeedForward(4, 8, expert_capacity=6)
    assert Top2FeedForward.from_config(layer.get_config()).expert_capacity == 6
    assert SwitchFeedForward(4, 8).get_config()["expert_capacity"] is None
    assert SwitchArchitecture(16, 8, 2, 8, 1, expert_capacity=6).moe_options["expert_capacity"] == 6
    for value in (0, 2.5, True, "8", float("inf")):
        with pytest.raises(ValueError, match="`expert_capacity` must be an integer >= 1"):
            SwitchFeedForward(4, 8, expert_capacity=value)
