"""Exact analytic parameter counts of the presets (no weights are allocated).

`count_params(name)` equals `model.count_params()` of the preset's model
(`SwitchSeq2SeqLM` for seq2seq presets, `SwitchCausalLM` for causal-LM presets, or
`SwitchTextClassifier` with `task="classifier"`). `count_active_params(name)` counts the
parameters one token uses: everything except the experts it is not routed to (`top_k`
of them are); embeddings included.
"""

from tfmoe.layers.transformer_stack import is_sparse_layer
from tfmoe.models import presets as preset_registry

TASKS = ("default", "classifier")
# The `tfmoe.models` names of the task of each backbone layout (the preset table's
# "model" column).
ZOO_NAMES = {
    "encoder_decoder": "SwitchTransformer",
    "decoder_only": "SwitchDecoderLM",
    "encoder_only": "SwitchClassifier",
}


def _model_class(kind, task):
    from tfmoe.models.switch_causal_lm import SwitchCausalLM
    from tfmoe.models.switch_seq2seq_lm import SwitchSeq2SeqLM
    from tfmoe.models.switch_text_classifier import SwitchTextClassifier

    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if task == "classifier":
        if kind != preset_registry.SEQ2SEQ:
            raise ValueError("`task='classifier'` needs a seq2seq preset.")
        return SwitchTextClassifier
    return SwitchSeq2SeqLM if kind == preset_registry.SEQ2SEQ else SwitchCausalLM


def resolved_config(name, task="default", **overrides):
    """The task class and its backbone's full arguments (defaults, preset, overrides).

    With `task="classifier"`, `overrides` must hold `num_classes` (kept in the result);
    the other overrides are backbone arguments, as for `from_preset`.
    """
    from tfmoe.models.switch_architecture import SwitchArchitecture
    from tfmoe.models.switch_backbone import SwitchBackbone

    kind = preset_registry.get_preset(name)["kind"]
    cls = _model_class(kind, task)
    num_classes = overrides.pop("num_classes", None)
    if task == "classifier":
        if num_classes is None:
            raise ValueError("`task='classifier'` needs `num_classes`.")
        overrides["layout"] = "encoder_only"
    elif num_classes is not None:
        raise ValueError("`num_classes` needs `task='classifier'`.")
    config = {
        **SwitchArchitecture.argument_defaults(),
        "num_decoder_layers": None,
        "decoder_sparse_step": None,
        **SwitchBackbone.builtin_preset_config(name, **overrides),
    }
    if num_classes is not None:
        config["num_classes"] = int(num_classes)
    if config.get("key_value_dim") is None:
        config["key_value_dim"] = config["hidden_dim"] // config["num_heads"]
    return cls, config


def _stack_params(config, num_layers, sparse_step, cross_attention, active):
    """Parameters of one `TransformerStack` (relative bias, blocks, final norm)."""
    d = config["hidden_dim"]
    inner = config["num_heads"] * config["key_value_dim"]
    ffn = d * config["intermediate_dim"] * (3 if config["gated"] else 2)
    attention = 4 * d * inner + d  # q, k, v, o + its layer norm
    experts, top_k = config["num_experts"], config["top_k"]
    total = config["relative_attention_num_buckets"] * config["num_heads"] + d
    for i in range(num_layers):
        total += attention * (2 if cross_attention else 1) + d  # + feed-forward norm
        if experts and is_sparse_layer(i, sparse_step):
            total += d * experts + (min(top_k, experts) if active else experts) * ffn
        else:
            total += ffn
    return total


def _count(name, active, task, overrides):
    cls, c = resolved_config(name, task, **overrides)
    d, vocab = c["hidden_dim"], c["vocabulary_size"]
    # The classifier's encoder-only backbone has no output projection.
    untied_output = c["layout"] != "encoder_only" and not c["tie_embeddings"]
    total = vocab * d * (2 if untied_output else 1)
    total += _stack_params(
        c, c["num_layers"], c["sparse_step"], cross_attention=False, active=active
    )
    if c["layout"] == "encoder_decoder":
        decoder_layers = (
            c["num_layers"] if c["num_decoder_layers"] is None else c["num_decoder_layers"]
        )
        step = c["sparse_step"] if c["decoder_sparse_step"] is None else c["decoder_sparse_step"]
        total += _stack_params(c, decoder_layers, step, cross_attention=True, active=active)
    elif "num_classes" in c:
        total += d * c["num_classes"] + c["num_classes"]
    return total


def count_params(name, task="default", **overrides):
    """Exact parameter count of preset `name` (with `overrides`), without building it.

    Args:
      name: preset name (`list_presets()`).
      task: "default" (the preset's model) or "classifier" (`SwitchTextClassifier`, then
        pass `num_classes`).
      **overrides: constructor overrides, as for `from_preset`.
    """
    return _count(name, False, task, overrides)


def count_active_params(name, task="default", **overrides):
    """Parameters used per token: all but the experts a token is not routed to."""
    return _count(name, True, task, overrides)


def _human(n):
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def preset_table():
    """Markdown table of every preset: model, shape, total and active parameters."""
    rows = [
        "| preset | model | layers | d_model | heads | d_ff | experts (top-k, step) "
        "| total params | active params / token |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in preset_registry.list_presets():
        cls, c = resolved_config(name)
        layers = str(c["num_layers"])
        if c["layout"] == "encoder_decoder":
            decoder = (
                c["num_layers"] if c["num_decoder_layers"] is None else c["num_decoder_layers"]
            )
            layers = f"{c['num_layers']}+{decoder}"
        ffn = f"{c['intermediate_dim']}{' GEGLU' if c['gated'] else ''}"
        experts = (
            f"{c['num_experts']} (top-{c['top_k']}, {c['sparse_step']})"
            if c["num_experts"]
            else "dense"
        )
        total, active = count_params(name), count_active_params(name)
        rows.append(
            f"| `{name}` | {ZOO_NAMES[c['layout']]} | {layers} | {c['hidden_dim']} | {c['num_heads']} "
            f"| {ffn} | {experts} | {total:,} ({_human(total)}) "
            f"| {active:,} ({_human(active)}) |"
        )
    return "\n".join(rows)
