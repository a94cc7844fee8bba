"""Expert parallelism with DTensor: each device holds `num_experts / devices` experts.

TensorFlow's supported way to shard one variable across devices is DTensor
(`tf.experimental.dtensor`); `keras.distribution` is a prototype on the TF backend
(its Keras docs mark it not for use). `ExpertParallelMoe` runs a `SwitchFeedForward` / `Top2FeedForward` layer's
computation on a 2-D mesh `("batch", "expert")`:

    tokens       [G, T, H]        layout (batch, -, -)      data parallel; routing groups
                                                            as the layer forms them
                                                            (`group_shape`), within
                                                            each batch shard
    router       [H, E]           replicated
    routing      RoutingInstructions, one-hot dispatch      per batch shard (einsum, static)
    dispatch     [E, G*C, H]      relayout -> (expert, -, -)   <- the all-to-all
    experts      wi [E, F, H], wo [E, F, H]  layout (expert, -, -): E/n experts per device
    combine      [E, G*C, H]      relayout -> (-, batch, -)    <- the all-to-all back
    outputs      [B, S, H]        layout (batch, -, -)

The layer's own forward pass runs unchanged on DTensors: its router projection
(`router_logits`), `MoeFeedForward.grouped_forward` (routing instructions, einsum
dispatch / combine, auxiliary losses) and the experts' math (`expert_feed_forward`);
only the weights and the relayouts around the experts are this module's. DTensor's
SPMD expansion inserts the collectives. Gradients flow through
`tf.GradientTape` to the sharded variables, each device getting only its experts'
gradients. Jitter noise and dropout are not applied (deterministic path).

A call runs as a `tf.function`. For gradients, put the whole step, tape included,
inside one `tf.function` (as `loss_and_gradients` does): DTensor needs layouts on every output
of a traced function, and a tape around a traced forward pass alone breaks that.

```python
mesh = tfmoe.distribute.expert_mesh(expert=2)                 # 2 logical CPUs / GPUs / TPU cores
sharded = tfmoe.distribute.ExpertParallelMoe(layer, mesh)     # layer: a built MoE layer
outputs, aux_loss = sharded(x, padding_mask, training=True)   # x [batch, seq, hidden]
sharded.train_step(x, padding_mask, loss_fn, learning_rate)   # one SGD step
loss, grads = sharded.loss_and_gradients(x, padding_mask, loss_fn)  # grads sharded like weights
sharded.shard_shapes()     # {"wi": [(E/2, F, H), (E/2, F, H)], ...}
sharded.assign_to(layer)   # copy the (trained) weights back
```
See docs/scaling.md for the design at pod scale and its cost estimates.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.experimental import dtensor

from tfmoe.layers.experts import expert_feed_forward
from tfmoe.layers.moe_feed_forward import MoeFeedForward
from tfmoe.layers.router import router_logits

BATCH, EXPERT = "batch", "expert"
_U = dtensor.UNSHARDED


def expert_mesh(
    expert: int | None = None, batch: int = 1, device_type: str | None = None
) -> dtensor.Mesh:
    """A `("batch", "expert")` DTensor mesh over the first `batch * expert` local devices.

    Args:
      expert: devices along the expert axis (default: all devices / `batch`).
      batch: devices along the data-parallel axis.
      device_type: "TPU", "GPU" or "CPU" (default: the first kind present, in that order).

    Raises:
      ValueError: not enough devices of that type.
    """
    if device_type is None:
        device_type = next(
            (kind for kind in ("TPU", "GPU") if tf.config.list_logical_devices(kind)), "CPU"
        )
    devices = tf.config.list_logical_devices(device_type)
    if expert is None:
        expert = max(len(devices) // batch, 1)
    for name, value in (("expert", expert), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    if batch * expert > len(devices):
        raise ValueError(
            f"a mesh of batch={batch} x expert={expert} needs {batch * expert} {device_type} devices, "
            f"found {len(devices)} (on a CPU, split it first: tfmoe.distribute.split_cpu(n))"
        )
    names = [f"{device_type}:{i}" for i in range(batch * expert)]
    return dtensor.create_mesh(
        [(BATCH, batch), (EXPERT, expert)], devices=names, device_type=device_type
    )


def _layout(mesh, *specs):
    return dtensor.Layout(list(specs), mesh)


def _to_mesh(value, layout):
    value = tf.convert_to_tensor(value)
    replicated = dtensor.copy_to_mesh(
        value, dtensor.Layout.replicated(layout.mesh, value.shape.rank)
    )
    return dtensor.relayout(replicated, layout)


def _to_local(value):
    """A DTensor -> an ordinary tensor holding the whole value (on the host)."""
    replicated = dtensor.relayout(
        value, dtensor.Layout.replicated(dtensor.fetch_layout(value).mesh, value.shape.rank)
    )
    return tf.identity(dtensor.unpack(replicated)[0])


class ExpertParallelMoe(tf.Module):
    """An MoE layer's weights on a DTensor mesh, experts sharded; callable like the layer.

    Args:
      layer: a built `tfmoe.layers.SwitchFeedForward` / `Top2FeedForward` (its current
        weights are copied; the layer is left unchanged).
      mesh: a mesh with `"batch"` and `"expert"` dimensions (`expert_mesh`).

    Call: `(x, padding_mask=None, training=False)` with `x` `[batch, seq, hidden]`
    (ordinary tensors or DTensors) -> `(outputs [batch, seq, hidden], aux_loss ())`, both
    DTensors (`outputs` batch-sharded). `aux_loss` is the layer's weighted auxiliary loss
    (load balancing + z-loss) when `training`, else 0.

    Raises:
      ValueError: not an MoE layer, not built, or `num_experts` / batch not divisible by the mesh.
    """

    def __init__(self, layer: MoeFeedForward, mesh: dtensor.Mesh):
        super().__init__(name=f"{layer.name}_expert_parallel")
        if not isinstance(layer, MoeFeedForward):
            raise ValueError(
                f"`layer` must be a tfmoe MoE feed-forward layer, got {type(layer).__name__}"
            )
        if not layer.built:
            raise ValueError("`layer` must be built (call it once) before sharding its experts")
        if tuple(mesh.dim_names) != (BATCH, EXPERT):
            raise ValueError(
                f"`mesh` must have dimensions ('batch', 'expert'), got {tuple(mesh.dim_names)}"
            )
        shards = mesh.dim_size(EXPERT)
        if layer.num_experts % shards:
            raise ValueError(
                f"`num_experts`={layer.num_experts} is not divisible by the mesh's "
                f"{shards} expert shards"
            )
        self.layer = layer
        self.mesh = mesh
        self.router_kernel = dtensor.DVariable(
            _to_mesh(layer.router.kernel.value, dtensor.Layout.replicated(mesh, 2)), name="router"
        )
        expert_layout = _layout(mesh, EXPERT, _U, _U)
        self.expert_weights = {
            name: dtensor.DVariable(
                _to_mesh(getattr(layer.experts, name).value, expert_layout), name=name
            )
            for name in self.expert_weight_names()
        }
        self._activation = layer.experts.activation

    def expert_weight_names(self):
        return self.layer.experts.kernel_names

    @property
    def trainable_dvariables(self):
        return [self.router_kernel] + [self.expert_weights[n] for n in self.expert_weight_names()]

    def shard_shapes(self) -> dict:
        """`{weight name: [shape on each device]}` of the sharded expert weights."""
        return {
            name: [tuple(t.shape) for t in dtensor.unpack(v.read_value())]
            for name, v in self.expert_weights.items()
        }

    def assign_to(self, layer: MoeFeedForward | None = None) -> None:
        """Copies the router and expert weights back into `layer` (default: the source layer)."""
        layer = layer or self.layer
        layer.router.kernel.assign(_to_local(self.router_kernel.read_value()))
        for name, variable in self.expert_weights.items():
            getattr(layer.experts, name).assign(_to_local(variable.read_value()))

    def loss_and_gradients(self, inputs, padding_mask, loss_fn):
        """`(loss, gradients)` of `loss_fn(outputs) + aux_loss`, traced as one `tf.function`.

        `loss_fn` maps the batch-sharded outputs DTensor `[batch, seq, hidden]` to a scalar.
        `gradients` follow `trainable_dvariables` (router, then expert weights) and keep
        their layouts: each device computes only its own experts' gradients.
        """
        key = id(loss_fn)
        if getattr(self, "_gradient_key", None) != key:
            self._gradient_key = key
            self._gradient_function = tf.function(
                lambda x, mask, grouping: self._loss_and_gradients(x, mask, grouping, loss_fn)
            )
        return self._gradient_function(*self._prepare(inputs, padding_mask))

    def _loss_and_gradients(self, inputs, padding_mask, grouping, loss_fn):
        with tf.GradientTape() as tape:
            outputs, aux = self._forward(inputs, padding_mask, grouping, True)
            loss = loss_fn(outputs) + aux
        return loss, tape.gradient(loss, self.trainable_dvariables)

    def train_step(self, inputs, padding_mask, loss_fn, learning_rate):
        """One SGD step on `loss_fn(outputs) + aux_loss`; returns the loss (before the step)."""
        loss, gradients = self.loss_and_gradients(inputs, padding_mask, loss_fn)
        for variable, gradient in zip(self.trainable_dvariables, gradients):
            variable.assign_sub(learning_rate * gradient)
        return loss

    def _experts(self, expert_inputs):
        """`[E, G*C, H]` dispatched tokens -> expert outputs, computed where the experts live."""
        expert_inputs = dtensor.relayout(expert_inputs, _layout(self.mesh, EXPERT, _U, _U))
        kernels = {name: v.read_value() for name, v in self.expert_weights.items()}
        expert_outputs = expert_feed_forward(expert_inputs, kernels, self._activation)
        return dtensor.relayout(expert_outputs, _layout(self.mesh, _U, BATCH, _U))

    def __call__(self, inputs, padding_mask=None, training=False):
        if not hasattr(self, "_forward_function"):
            self._forward_function = tf.function(self._forward)
        return self._forward_function(*self._prepare(inputs, padding_mask), bool(training))

    def _prepare(self, inputs, padding_mask):
        """`(inputs, padding_mask, (rows per group, tokens per group))`, inputs on the mesh."""
        layer = self.layer
        token_layout = _layout(self.mesh, BATCH, _U, _U)
        if not dtensor.is_dtensor(inputs):
            inputs = _to_mesh(tf.cast(inputs, tf.float32), token_layout)
        batch, seq_len = inputs.shape[0], inputs.shape[1]
        if batch % self.mesh.dim_size(BATCH):
            raise ValueError(
                f"the batch ({batch}) must be divisible by the mesh's "
                f"{self.mesh.dim_size(BATCH)} batch shards"
            )
        if padding_mask is None:
            padding_mask = tf.ones([batch, seq_len], tf.bool)
        if not dtensor.is_dtensor(padding_mask):
            padding_mask = _to_mesh(tf.cast(padding_mask, tf.bool), _layout(self.mesh, BATCH, _U))
        # Routing groups as the layer forms them, within each batch shard (a group never
        # spans devices, so routing needs no collective).
        rows, positions = layer.group_shape(batch // self.mesh.dim_size(BATCH), seq_len)
        return inputs, padding_mask, (rows, rows * positions)

    def _forward(self, inputs, padding_mask, grouping, training):
        rows, tokens = grouping
        shape = tf.shape(inputs)
        # Groups are whole shard-local rows: keep them batch-sharded after the reshape.
        grouped = dtensor.relayout(
            tf.reshape(inputs, [-1, tokens, inputs.shape[-1]]), _layout(self.mesh, BATCH, _U, _U)
        )  # [G, T, H]
        padding_mask = dtensor.relayout(
            tf.reshape(padding_mask, [-1, tokens]), _layout(self.mesh, BATCH, _U)
        )
        logits = router_logits(grouped, self.router_kernel.read_value())  # [G, T, E]
        result = self.layer.grouped_forward(
            grouped,
            padding_mask,
            logits,
            self._experts,
            rows_per_group=rows,
            dispatch="einsum",
            training=training,
        )
        outputs = dtensor.relayout(
            tf.reshape(result.outputs, shape), _layout(self.mesh, BATCH, _U, _U)
        )  # [B, S, H]
        aux = tf.zeros([], tf.float32)
        for loss in result.aux_losses:
            aux += loss
        return outputs, aux
