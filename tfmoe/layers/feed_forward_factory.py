"""The one place where a transformer block picks its feed-forward network (dense or MoE)."""

from tfmoe.layers.dense_feed_forward import DenseFeedForward

ROUTINGS = ("top1", "top2")

# Options forwarded verbatim to the MoE layers (see `tfmoe.layers.MoeFeedForward`).
MOE_OPTION_NAMES = (
    "capacity_factor",
    "eval_capacity_factor",
    "jitter_noise",
    "load_balance_weight",
    "z_loss_weight",
    "router_dtype",
    "dispatch",
    "routing_metrics",
    "group_size",
    "min_capacity",
    "priority",
)


def is_sparse_layer(index, sparse_step):
    """Whether layer `index` (0-based) of a stack holds an MoE feed-forward.

    The rule of Hugging Face `SwitchTransformersStack` (and the released checkpoints):
    `sparse_step == 0` -> no sparse layer; `sparse_step == 1` -> every layer;
    otherwise the layers with `index % sparse_step == 1` (step 2: layers 1, 3, 5, ...).
    """
    if sparse_step < 0:
        raise ValueError(f"`sparse_step` must be >= 0, got {sparse_step}.")
    if sparse_step == 0:
        return False
    return sparse_step == 1 or index % sparse_step == 1


def make_feed_forward(intermediate_dim, *, num_experts=0, routing="top1", activation="relu",
                      gated=False, dropout=0.0, init_scale=1.0, moe_options=None, dtype=None,
                      name=None):
    """Builds the feed-forward network of one transformer block.

    Args:
      intermediate_dim: hidden size of the network (of each expert when sparse).
      num_experts: 0 for a `DenseFeedForward`; otherwise the number of experts of a
        `SwitchFeedForward` (`routing="top1"`) or `Top2FeedForward` (`"top2"`).
      routing: `"top1"` or `"top2"`.
      activation, gated: network / expert activation and gated-linear-unit variant.
      dropout: dropout on the hidden activations (MoE: `expert_dropout`). The residual
        dropout is the block's, so the MoE layers get `dropout=0`.
      init_scale: variance scale of the initializers (dense and expert kernels, router).
      moe_options: dict of `MOE_OPTION_NAMES` options for the MoE layers.
      dtype: dtype policy.
      name: layer name.
    """
    if num_experts < 0:
        raise ValueError(f"`num_experts` must be >= 0, got {num_experts}.")
    if num_experts == 0:
        return DenseFeedForward(intermediate_dim, activation=activation, gated=gated,
                                dropout=dropout, init_scale=init_scale, dtype=dtype, name=name)
    if routing not in ROUTINGS:
        raise ValueError(f"`routing` must be one of {ROUTINGS}, got {routing!r}.")
    options = dict(moe_options or {})
    unknown = sorted(set(options) - set(MOE_OPTION_NAMES))
    if unknown:
        raise ValueError(f"Unknown `moe_options` {unknown}; valid: {list(MOE_OPTION_NAMES)}.")
    from tfmoe.layers.moe_feed_forward import SwitchFeedForward, Top2FeedForward

    cls = SwitchFeedForward if routing == "top1" else Top2FeedForward
    return cls(num_experts, intermediate_dim, activation=activation, gated=gated, dropout=0.0,
               expert_dropout=dropout, init_scale=init_scale, dtype=dtype, name=name,
               **options)
