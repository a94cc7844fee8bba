"""Experts sharded over logical CPUs with DTensor: same outputs and gradients as one device.

Run as a script, it checks a 2 x 2 (batch x expert) mesh on 4 logical CPUs, where
tokens really move between devices (all-to-all); the test below starts it.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.experimental import dtensor

from tfmoe.distribute import ExpertParallelMoe, expert_mesh
from tfmoe.distribute.expert_parallel import _to_local
from tfmoe.layers import SwitchFeedForward, Top2FeedForward

BATCH, SEQ, HIDDEN, EXPERTS, FF = 4, 8, 16, 4, 32


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=[BATCH, SEQ, HIDDEN]).astype(np.float32)
    mask = np.ones([BATCH, SEQ], bool)
    mask[1, -3:] = False
    return tf.constant(x), tf.constant(mask)


def _layer(cls, **kwargs):
    layer = cls(
        EXPERTS, FF, dispatch="einsum", load_balance_weight=0.1, z_loss_weight=0.01, **kwargs
    )
    layer(_inputs()[0])
    return layer


@pytest.fixture(scope="module")
def mesh():
    return expert_mesh(expert=2, batch=1, device_type="CPU")


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (SwitchFeedForward, {}),
        (Top2FeedForward, {"gated": True, "activation": "gelu"}),
        # One routing group per sequence (the layer's `group_shape`), 2 slots per expert.
        (SwitchFeedForward, {"expert_capacity": 2}),
    ],
)
@pytest.mark.parametrize("training", [False, True])
def test_sharded_experts_match_the_single_device_layer(mesh, cls, kwargs, training):
    layer = _layer(cls, capacity_factor=0.75, **kwargs)  # some tokens dropped: capacity is enforced
    x, mask = _inputs(1)
    sharded = ExpertParallelMoe(layer, mesh)

    # Each device holds half of the experts of every expert weight.
    for name, shapes in sharded.shard_shapes().items():
        full = tuple(getattr(layer.experts, name).shape)
        assert shapes == [(EXPERTS // 2,) + full[1:]] * 2, name

    outputs, aux = sharded(x, mask, training=training)
    assert dtensor.fetch_layout(outputs).sharding_specs[0] == "batch"
    expected = layer(x, padding_mask=mask, training=training)
    np.testing.assert_allclose(_to_local(outputs).numpy(), expected.numpy(), atol=1e-5)
    expected_aux = sum(float(v) for v in layer.losses) if training else 0.0
    assert float(_to_local(aux)) == pytest.approx(expected_aux, rel=1e-5, abs=1e-7)


def _outputs_match(mesh, cls=Top2FeedForward):
    # Routing groups form within each batch shard: the single-device layer gets the same.
    rows_per_shard = BATCH // mesh.dim_size("batch")
    layer = _layer(
        cls,
        capacity_factor=1.0,
        eval_capacity_factor=0.75,
        min_capacity=1,
        group_size=rows_per_shard * SEQ,
    )
    x, mask = _inputs(3)
    outputs, _ = ExpertParallelMoe(layer, mesh)(x, mask, training=False)
    assert (
        float(layer(x, padding_mask=mask).numpy().size)
        and float(layer.routing_stats["dropped_fraction"]) > 0
    )  # capacity binds
    np.testing.assert_allclose(
        _to_local(outputs).numpy(), layer(x, padding_mask=mask).numpy(), atol=1e-5
    )


def test_batch_sharded_mesh_matches():
    _outputs_match(expert_mesh(expert=1, batch=2, device_type="CPU"))


def test_two_by_two_mesh_matches_in_a_four_cpu_process():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "2x2 mesh: outputs match" in result.stdout, result.stderr[
        -3000:
    ]


def test_gradients_and_an_sgd_step_match_the_single_device_layer(mesh):
    layer = _layer(SwitchFeedForward)
    x, mask = _inputs(2)
    target = tf.random.stateless_normal([BATCH, SEQ, HIDDEN], seed=[1, 2])
    sharded = ExpertParallelMoe(layer, mesh)

    with tf.GradientTape() as tape:
        outputs = layer(x, padding_mask=mask, training=True)
        loss = tf.reduce_mean((outputs - target) ** 2) + tf.add_n(layer.losses)
    variables = [layer.router.kernel.value, layer.experts.wi.value, layer.experts.wo.value]
    expected = tape.gradient(loss, variables)
    variables_before = [v.numpy() for v in variables]
    loss_single = loss

    target_d = dtensor.copy_to_mesh(target, dtensor.Layout.replicated(mesh, 3))
    target_d = dtensor.relayout(target_d, dtensor.Layout(["batch", "unsharded", "unsharded"], mesh))

    def loss_fn(outputs_d):
        return tf.reduce_mean((outputs_d - target_d) ** 2)

    loss_d, grads = sharded.loss_and_gradients(x, mask, loss_fn)
    assert float(_to_local(loss_d)) == pytest.approx(float(loss_single), rel=1e-5)
    # The expert gradients stay sharded like their weights: no device sees the others' experts.
    assert dtensor.fetch_layout(grads[1]).sharding_specs[0] == "expert"
    for name, got, want in zip(("router", "wi", "wo"), grads, expected):
        np.testing.assert_allclose(_to_local(got).numpy(), want.numpy(), atol=1e-6, err_msg=name)

    # One SGD step through the public train_step, copied back into the Keras layer.
    loss = sharded.train_step(x, mask, loss_fn, 0.5)
    assert float(_to_local(loss)) == pytest.approx(float(loss_single), rel=1e-5)
    sharded.assign_to(layer)
    for variable, start, grad in zip(
        (layer.router.kernel, layer.experts.wi, layer.experts.wo), variables_before, expected
    ):
        np.testing.assert_allclose(variable.numpy(), start - 0.5 * grad.numpy(), atol=1e-6)


def test_bad_meshes_and_layers_are_rejected(mesh):
    with pytest.raises(ValueError, match="num_experts"):
        layer = SwitchFeedForward(3, 8)
        layer(tf.zeros([2, 4, 8]))
        ExpertParallelMoe(layer, mesh)
    with pytest.raises(ValueError, match="must be built"):
        ExpertParallelMoe(SwitchFeedForward(4, 8), mesh)
    with pytest.raises(ValueError, match="needs 64 CPU devices"):
        expert_mesh(expert=64, device_type="CPU")
    with pytest.raises(ValueError, match="`expert` must be a positive integer"):
        expert_mesh(expert=0)


if __name__ == "__main__":
    from tfmoe.distribute import split_cpu

    split_cpu(4)
    _outputs_match(expert_mesh(expert=2, batch=2, device_type="CPU"))
    print("2x2 mesh: outputs match")
