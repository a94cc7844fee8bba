"""Hugging Face `SwitchTransformersForConditionalGeneration` -> `tfmoe.models.SwitchTransformer`.

`from_hf_switch(path)` reads `config.json` and the safetensors weights (NumPy only, no
torch) of a directory written by `save_pretrained` and returns a `SwitchTransformer`
(`SwitchSeq2SeqLM`, no preprocessor) with the same logits. The weight-name mapping is
documented on `hf_weight_plan`.

Behaviour differences handled here:
  - Capacity: Hugging Face's `expert_capacity` is a number of slots per expert in each
    sequence, in training and inference; tokens claim them in position order and those
    over it are dropped (their sparse MLP output is zero). The converted model gets the
    same `expert_capacity` MoE option (one routing group per sequence), so it drops
    the same tokens. transformers' cached `generate` routes one new token per step,
    which no capacity drops: tfmoe's cached generation does the same. Override with
    `expert_capacity=None` (and `eval_capacity_factor`) for capacity factors.
  - Padding: `router_ignore_padding_tokens` is taken from the config. transformers'
    router does not read it: it routes padding tokens, which take capacity like real
    tokens. With `false` (the default) tfmoe does the same and every position matches;
    with `true` padding is kept out of tfmoe's routers: the logits at padded positions
    differ, those at real tokens match for right-padded inputs (padding then claims
    slots only after every real token of its sequence).
  - Input embeddings: transformers ties the stacks' input embeddings and the output
    matrix to `shared.weight` when `tie_word_embeddings` is true; when it is false
    (transformers 5) the encoder, the decoder and `lm_head` have weights of their own,
    and the converted model gets `separate_input_embeddings=True` when the two stacks'
    differ.
  - Jitter and dropout only act in training (`fit`), never at inference.

Config fields: every `config.json` field is either mapped, checked (values tfmoe or
transformers cannot reproduce raise a ValueError naming the field), or listed in
`NO_EFFECT_FIELDS` (bookkeeping and generation defaults, ignored with a log line);
any other field raises a ValueError naming it, as it may change the computation.
"""

import json
import logging
import math
import os
import re

import numpy as np

from tfmoe.convert.safetensors_checkpoint import SafetensorsCheckpoint

# `SwitchTransformersConfig` defaults, used for fields missing from a config.json.
HF_DEFAULTS = dict(
    vocab_size=32128,
    d_model=768,
    d_kv=64,
    d_ff=2048,
    num_layers=12,
    num_sparse_encoder_layers=3,
    num_decoder_layers=None,
    num_sparse_decoder_layers=3,
    num_heads=12,
    num_experts=8,
    router_bias=False,
    router_jitter_noise=0.01,
    router_dtype="float32",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
    router_z_loss_coef=0.001,
    router_aux_loss_coef=0.001,
    dense_act_fn="relu",
    tie_word_embeddings=True,
    pad_token_id=0,
    eos_token_id=1,
    is_encoder_decoder=True,
    router_ignore_padding_tokens=False,
    expert_capacity=64,
)

logger = logging.getLogger("tfmoe.convert")

# Fields that `switch_transformer_arguments` maps or checks.
MAPPED_FIELDS = frozenset(HF_DEFAULTS) | {
    "model_type",
    "decoder_start_token_id",
    "encoder_sparse_step",
    "decoder_sparse_step",
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "is_gated_act",
    "feed_forward_proj",
    "router_type",
    "num_selected_experts",
    "batch_prioritized_routing",
}

# Fields that do not change the converted model's inference: bookkeeping, training-only
# options of transformers, generation defaults (`generate` takes its own arguments).
NO_EFFECT_FIELDS = frozenset(
    {
        "_name_or_path",
        "architectures",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "use_cache",
        "add_router_probs",
        "output_router_logits",
        "initializer_factor",
        "is_decoder",
        "add_cross_attention",
        "bos_token_id",
        "sep_token_id",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "torchscript",
        "use_bfloat16",
        "tf_legacy_loss",
        "pruned_heads",
        "chunk_size_feed_forward",
        "cross_attention_hidden_size",
        "tie_encoder_decoder",
        "problem_type",
        "id2label",
        "label2id",
        "finetuning_task",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "max_length",
        "min_length",
        "do_sample",
        "early_stopping",
        "num_beams",
        "num_beam_groups",
        "diversity_penalty",
        "temperature",
        "top_k",
        "top_p",
        "typical_p",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "bad_words_ids",
        "num_return_sequences",
        "output_scores",
        "return_dict_in_generate",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "remove_invalid_values",
        "exponential_decay_length_penalty",
        "suppress_tokens",
        "begin_suppress_tokens",
        "gradient_checkpointing",
    }
)

# Hugging Face `ACT2FN` names -> Keras activations with the same definition.
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "silu", "swish": "silu"}

# Input embeddings of the two stacks: tied to `shared.weight` by transformers when
# `tie_word_embeddings` is true (and always by transformers 4), weights of their own in
# transformers 5 models with `tie_word_embeddings=False`.
SHARED_EMBEDDING = "shared.weight"
STACK_EMBEDDINGS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def input_embedding_names(checkpoint, tie_embeddings):
    """`(encoder name, decoder name)`: the checkpoint tensors transformers embeds the
    encoder and decoder inputs with (`shared.weight` when tied or not stored)."""
    if tie_embeddings:
        return SHARED_EMBEDDING, SHARED_EMBEDDING
    return tuple(name if name in checkpoint else SHARED_EMBEDDING for name in STACK_EMBEDDINGS)


def from_hf_switch(path, progress=False, **overrides):
    """Converts a Hugging Face Switch Transformers directory into a `SwitchTransformer`.

    Args:
      path: directory written by `SwitchTransformersForConditionalGeneration
        .save_pretrained`: `config.json` plus `model.safetensors` or sharded
        `model-*.safetensors` with `model.safetensors.index.json`.
      progress: show a progress bar (`keras.utils.Progbar`) while the weights load.
      **overrides: `SwitchSeq2SeqBackbone` arguments replacing the converted ones
        (e.g. `expert_capacity`, `dropout`, `dtype`,
        `router_ignore_padding_tokens=True`).

    Returns:
      A `tfmoe.models.SwitchTransformer` (`SwitchSeq2SeqLM` without preprocessor)
      holding the checkpoint's weights.

    Raises:
      ValueError: unsupported config field (naming it), unknown override, a config
        that is not valid JSON, an unreadable (empty, truncated) safetensors file,
        checkpoint weights left unmapped or missing (listing the names), shape
        mismatches, or NaN / Inf weights (listing the tensors).
      FileNotFoundError: no directory `path`, or no `config.json` or no safetensors
        weights in it.
    """
    kwargs = switch_transformer_arguments(read_hf_config(path))
    # The files are checked before TensorFlow is imported: a bad directory fails fast.
    checkpoint = SafetensorsCheckpoint(path)
    return build_switch_transformer(kwargs, checkpoint, progress=progress, **overrides)


def build_switch_transformer(kwargs, checkpoint, progress=False, **overrides):
    """A `SwitchTransformer` of `SwitchSeq2SeqBackbone` arguments `kwargs` (plus
    `overrides`) holding the weights of `checkpoint` (`SafetensorsCheckpoint`).

    An untied model gets `separate_input_embeddings` when the checkpoint's encoder and
    decoder input embeddings differ.
    """
    from tfmoe.models import SwitchSeq2SeqBackbone, SwitchTransformer

    unknown = sorted(set(overrides) - SwitchSeq2SeqBackbone.accepted_arguments() - {"layout"})
    if unknown:
        raise ValueError(f"Unknown override(s) {unknown} for SwitchSeq2SeqBackbone.")
    kwargs = dict(kwargs)
    if not kwargs["tie_embeddings"]:
        encoder_name, decoder_name = input_embedding_names(checkpoint, tie_embeddings=False)
        kwargs["separate_input_embeddings"] = encoder_name != decoder_name and (
            not np.array_equal(checkpoint.get(encoder_name), checkpoint.get(decoder_name))
        )
    kwargs.update(overrides)
    model = SwitchTransformer(SwitchSeq2SeqBackbone(**kwargs))
    load_hf_weights(model, checkpoint, progress=progress)
    return model


def read_hf_config(path):
    """`config.json` of `path` as a dict, with `SwitchTransformersConfig` defaults
    for missing fields and `decoder_start_token_id` from `generation_config.json`
    when only that file has it."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No such directory: {os.fspath(path)!r}.")
    config_path = os.path.join(os.fspath(path), "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"No config.json in {os.fspath(path)!r}.")
    config = dict(HF_DEFAULTS, **_read_json_object(config_path))
    generation_path = os.path.join(os.fspath(path), "generation_config.json")
    if "decoder_start_token_id" not in config and os.path.exists(generation_path):
        start = _read_json_object(generation_path).get("decoder_start_token_id")
        if start is not None:
            config["decoder_start_token_id"] = start
    return config


def _read_json_object(path):
    """The JSON object (dict) in file `path`; ValueError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}.")
    return value


def switch_transformer_arguments(config):
    """Maps a Hugging Face Switch Transformers config dict to `SwitchSeq2SeqBackbone` arguments.

    Sparse layers follow Hugging Face: `encoder_sparse_step` / `decoder_sparse_step`
    when the config stores them, else `num_layers // num_sparse_encoder_layers`
    (and the decoder equivalent; `num_layers` when there are 0 sparse layers).

    Fields in `NO_EFFECT_FIELDS` are ignored (one log line lists them).

    Raises:
      ValueError: naming the field, for configs tfmoe cannot reproduce (`router_bias`
        true, an activation other than relu / gelu / silu, gated experts, a non
        encoder-decoder or non `switch_transformers` model type, several eos ids,
        routing other than transformers' top-1 token choice, an `expert_capacity` that
        is not an integer >= 1) and for fields neither mapped nor known to have no
        effect.
    """
    _check_fields(config)
    model_type = config.get("model_type", "switch_transformers")
    if model_type != "switch_transformers":
        raise ValueError(
            f"config field `model_type` must be 'switch_transformers', got {model_type!r}."
        )
    if not config["is_encoder_decoder"]:
        raise ValueError("config field `is_encoder_decoder` must be true.")
    if config["router_bias"]:
        raise ValueError(
            "config field `router_bias`=true is not supported: tfmoe routers have no bias."
        )
    act = config.get("feed_forward_proj", config["dense_act_fn"])
    if config.get("is_gated_act") or str(act).startswith("gated-"):
        raise ValueError(
            f"config field `{'is_gated_act' if config.get('is_gated_act') else 'dense_act_fn'}`:"
            " gated experts are not supported: transformers' SwitchTransformers builds "
            "`wi` / `wo` experts only, so no Switch checkpoint holds gated ones."
        )
    if act not in ACTIVATIONS:
        raise ValueError(
            f"config field `dense_act_fn`={act!r} is not supported; "
            f"supported: {sorted(ACTIVATIONS)}."
        )
    eos = config["eos_token_id"]
    if isinstance(eos, (list, tuple)):
        if len(eos) != 1:
            raise ValueError(f"config field `eos_token_id`={eos}: tfmoe takes one eos id.")
        eos = eos[0]
    for field, expected in (
        ("router_type", "tokens_masked"),
        ("num_selected_experts", 1),
        ("batch_prioritized_routing", False),
    ):
        if config.get(field, expected) != expected:
            raise ValueError(
                f"config field `{field}`={config[field]!r} is not supported: transformers "
                f"and tfmoe route each token to its top-1 expert ({field}={expected!r})."
            )
    if config.get("hidden_size", config["d_model"]) != config["d_model"]:
        raise ValueError(
            f"config field `hidden_size`={config['hidden_size']} differs from "
            f"`d_model`={config['d_model']}."
        )
    num_layers = int(config["num_layers"])
    num_decoder_layers = config["num_decoder_layers"]
    num_decoder_layers = num_layers if num_decoder_layers is None else int(num_decoder_layers)
    pad = 0 if config["pad_token_id"] is None else int(config["pad_token_id"])
    start = config.get("decoder_start_token_id")
    return dict(
        vocabulary_size=int(config["vocab_size"]),
        hidden_dim=int(config["d_model"]),
        num_heads=int(config["num_heads"]),
        key_value_dim=int(config["d_kv"]),
        intermediate_dim=int(config["d_ff"]),
        num_layers=num_layers,
        num_decoder_layers=num_decoder_layers,
        num_experts=int(config["num_experts"]),
        sparse_step=_sparse_step(config, "encoder", num_layers),
        decoder_sparse_step=_sparse_step(config, "decoder", num_decoder_layers),
        relative_attention_num_buckets=int(config["relative_attention_num_buckets"]),
        relative_attention_max_distance=int(config["relative_attention_max_distance"]),
        layer_norm_epsilon=float(config["layer_norm_epsilon"]),
        activation=ACTIVATIONS[act],
        gated=False,
        tie_embeddings=bool(config["tie_word_embeddings"]),
        dropout=float(config["dropout_rate"]),
        jitter_noise=float(config["router_jitter_noise"]),
        load_balance_weight=float(config["router_aux_loss_coef"]),
        z_loss_weight=float(config["router_z_loss_coef"]),
        router_dtype=config["router_dtype"],
        expert_capacity=_expert_capacity(config["expert_capacity"]),
        router_ignore_padding_tokens=bool(config["router_ignore_padding_tokens"]),
        pad_token_id=pad,
        eos_token_id=int(eos),
        decoder_start_token_id=pad if start is None else int(start),
    )


def _check_fields(config):
    """Logs the `NO_EFFECT_FIELDS` of `config`; raises naming fields that are not known."""
    unknown = sorted(set(config) - MAPPED_FIELDS - NO_EFFECT_FIELDS)
    if unknown:
        raise ValueError(
            f"config field(s) {', '.join(f'`{name}`' for name in unknown)} are unknown to "
            "the converter and may change the computation: remove them from config.json "
            "if they do not."
        )
    ignored = sorted(set(config) & NO_EFFECT_FIELDS)
    if ignored:
        logger.info(
            "Ignoring config.json fields that do not change inference: %s", ", ".join(ignored)
        )


def _expert_capacity(value):
    """The config's `expert_capacity` (slots per expert and sequence) as an int >= 1.

    `SwitchTransformersConfig` takes ints only; with 0 transformers drops every token.
    """
    is_count = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value == int(value)
        and value >= 1
    )
    if not is_count:
        raise ValueError(f"config field `expert_capacity`={value!r} must be an integer >= 1.")
    return int(value)


def _sparse_step(config, stack, num_layers):
    if config.get(f"{stack}_sparse_step") is not None:
        return int(config[f"{stack}_sparse_step"])
    num_sparse = int(config[f"num_sparse_{stack}_layers"])
    return num_layers // num_sparse if num_sparse > 0 else num_layers


def hf_weight_plan(model, input_embeddings=(SHARED_EMBEDDING, SHARED_EMBEDDING)):
    """Yields `(variable, hf_names, convert)` for every weight of a `SwitchTransformer`.

    `input_embeddings`: the checkpoint names of the encoder and decoder input
    embeddings (`input_embedding_names`).

    Weight paths, `tfmoe` <- Hugging Face (kernels are `[in, out]`: transpose the
    PyTorch `Linear.weight`; `{s}` is `encoder` or `decoder`, `{i}` the layer, `{f}`
    the feed-forward sublayer, 1 in the encoder and 2 in the decoder):
      backbone/token_embedding/embeddings          <- shared.weight (tied), else
                                                      decoder.embed_tokens.weight
      backbone/encoder_token_embedding/embeddings  <- encoder.embed_tokens.weight
                                                      (separate_input_embeddings only)
      backbone/token_embedding/reverse_embeddings  <- lm_head.weight.T (untied only)
      backbone/{s}/relative_position_bias/embeddings <- {s}.block.0.layer.0.SelfAttention
                                                      .relative_attention_bias.weight
      backbone/{s}/block_{i}/self_attention_layer_norm/scale <- {s}.block.{i}.layer.0
                                                      .layer_norm.weight
      backbone/{s}/block_{i}/self_attention/{q,k,v,o} <- {s}.block.{i}.layer.0
                                                      .SelfAttention.{q,k,v,o}.weight.T
      backbone/decoder/block_{i}/cross_attention_layer_norm/scale <- decoder.block.{i}
                                                      .layer.1.layer_norm.weight
      backbone/decoder/block_{i}/cross_attention/{q,k,v,o} <- decoder.block.{i}.layer.1
                                                      .EncDecAttention.{q,k,v,o}.weight.T
      backbone/{s}/block_{i}/feed_forward_layer_norm/scale <- {s}.block.{i}.layer.{f}
                                                      .layer_norm.weight
      dense:  .../feed_forward/{wi,wo}             <- ....layer.{f}.mlp.{wi,wo}.weight.T
      sparse: .../feed_forward/router/kernel       <- ....mlp.router.classifier.weight.T
              .../feed_forward/experts/wi[j]       <- ....mlp.experts.expert_{j}.wi.weight
                                                      (tfmoe stores it [out, in])
              .../feed_forward/experts/wo[j]       <- ....mlp.experts.expert_{j}.wo.weight.T
      backbone/{s}/final_layer_norm/scale          <- {s}.final_layer_norm.weight
    (gated models: `wi_0`, `wi_1` instead of `wi`.)

    `convert` maps the list of Hugging Face arrays named by `hf_names` (PyTorch layout,
    `Linear.weight` is `[out, in]`) to the variable's value: `_copy` (embeddings,
    norm scales, relative bias `[buckets, heads]`), `_linear` (transpose to the Keras
    `[in, out]` kernel), `_stack_experts` (E expert `wi` matrices -> `[E, out, in]`,
    tfmoe's expert `wi` layout) or `_stack_transposed_experts` (E expert `wo` matrices
    -> `[E, in, out]`).
    """
    backbone = model.backbone
    encoder_name, decoder_name = input_embeddings
    yield backbone.token_embedding.embeddings, [decoder_name], _copy
    if backbone.separate_input_embeddings:
        yield backbone.encoder_token_embedding.embeddings, [encoder_name], _copy
    if not backbone.tie_embeddings:
        yield backbone.token_embedding.reverse_embeddings, ["lm_head.weight"], _linear
    for s, stack in (("encoder", backbone.encoder), ("decoder", backbone.decoder)):
        yield (
            stack.relative_position_bias.embeddings,
            [f"{s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
            _copy,
        )
        yield stack.final_layer_norm.scale, [f"{s}.final_layer_norm.weight"], _copy
        for i, block in enumerate(stack.blocks):
            p = f"{s}.block.{i}.layer"
            attentions = [
                (block.self_attention_layer_norm, block.self_attention, f"{p}.0", "SelfAttention")
            ]
            if s == "decoder":
                attentions.append(
                    (
                        block.cross_attention_layer_norm,
                        block.cross_attention,
                        f"{p}.1",
                        "EncDecAttention",
                    )
                )
            for norm, attention, prefix, hf_name in attentions:
                yield norm.scale, [f"{prefix}.layer_norm.weight"], _copy
                for w in "qkvo":
                    yield (getattr(attention, w), [f"{prefix}.{hf_name}.{w}.weight"], _linear)
            f = f"{p}.{len(attentions)}"
            yield block.feed_forward_layer_norm.scale, [f"{f}.layer_norm.weight"], _copy
            ff = block.feed_forward
            if block.is_sparse:
                yield ff.router.kernel, [f"{f}.mlp.router.classifier.weight"], _linear
                for w in ff.experts.kernel_names:
                    yield (
                        getattr(ff.experts, w),
                        [f"{f}.mlp.experts.expert_{j}.{w}.weight" for j in range(ff.num_experts)],
                        _stack_experts
                        if ff.experts.stored_out_in(w)
                        else _stack_transposed_experts,
                    )
            else:
                for w in ("wi", "wo"):
                    yield getattr(ff, w), [f"{f}.mlp.{w}.weight"], _linear


def load_hf_weights(model, checkpoint, progress=False):
    """Assigns every weight of `model` from `checkpoint` (`SafetensorsCheckpoint`).

    All names are checked before anything is read. Tensors transformers does not use
    are ignored: with tied embeddings the stacks' input embeddings and `lm_head.weight`
    (tied to `shared.weight`), untied `shared.weight` when both stacks have their own.
    `progress`: a `keras.utils.Progbar` advancing per tensor assigned.

    Raises:
      ValueError: listing checkpoint weights the model has no place for and model
        weights the checkpoint lacks, listing shape mismatches or tensors holding NaN
        or Inf (a corrupted file), or when the stacks' input embeddings differ but the
        model has no `separate_input_embeddings`.
    """
    backbone = model.backbone
    input_embeddings = input_embedding_names(checkpoint, backbone.tie_embeddings)
    if not backbone.separate_input_embeddings:
        _check_one_input_embedding(checkpoint, *input_embeddings)
    plan = list(hf_weight_plan(model, input_embeddings))
    needed = [name for _, names, _ in plan for name in names]
    ignored = {SHARED_EMBEDDING, *STACK_EMBEDDINGS}
    if backbone.tie_embeddings:
        ignored.add("lm_head.weight")
    available = set(checkpoint.keys())
    missing = sorted(set(needed) - available)
    unmapped = sorted(available - set(needed) - ignored)
    if missing or unmapped:
        raise ValueError(
            "Checkpoint does not match the converted SwitchTransformer "
            f"(check config.json{_num_experts_hint(model, available)}): "
            f"{_listing('missing', missing)}; {_listing('unmapped', unmapped)}."
        )
    mismatches, non_finite = [], []
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(len(plan), unit_name="tensor")
    for step, (variable, names, convert) in enumerate(plan):
        if bar is not None:
            bar.update(step)
        arrays = [checkpoint.get(name) for name in names]
        non_finite.extend(name for name, array in zip(names, arrays) if not _all_finite(array))
        value = convert(arrays)
        if tuple(value.shape) != tuple(variable.shape):
            mismatches.append(
                f"{names[0]}: {tuple(value.shape)} -> {variable.path} {tuple(variable.shape)}"
            )
            continue
        variable.assign(value.astype(variable.dtype))
    if bar is not None:
        bar.update(len(plan), finalize=True)
    if mismatches:
        raise ValueError(
            "Weight shape mismatch (checkpoint shape -> tfmoe variable): " + "; ".join(mismatches)
        )
    if non_finite:
        raise ValueError(
            "Checkpoint weights hold NaN or Inf values (a corrupted file?): "
            f"{_listing('non-finite', sorted(non_finite))}."
        )


def _all_finite(array):
    array = np.asarray(array)
    return not np.issubdtype(array.dtype, np.floating) or bool(np.isfinite(array).all())


def _num_experts_hint(model, checkpoint_names):
    """`": num_experts=N but the checkpoint has M experts"` when they differ, else `""`."""
    experts = {
        int(m.group(1))
        for name in checkpoint_names
        if (m := re.search(r"\.mlp\.experts\.expert_(\d+)\.", name))
    }
    if not experts or max(experts) + 1 == model.backbone.num_experts:
        return ""
    return f": num_experts={model.backbone.num_experts} but the checkpoint has {max(experts) + 1} experts"


def _check_one_input_embedding(checkpoint, encoder_name, decoder_name):
    if (
        encoder_name == decoder_name
        or encoder_name not in checkpoint
        or (decoder_name not in checkpoint)
    ):
        return
    if not np.array_equal(checkpoint.get(encoder_name), checkpoint.get(decoder_name)):
        raise ValueError(
            f"{encoder_name} and {decoder_name} differ: convert with "
            "separate_input_embeddings=True."
        )


def _listing(label, names, limit=20):
    shown = ", ".join(names[:limit]) + (
        f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    )
    return f"{len(names)} {label} weight(s) [{shown}]"


def _copy(arrays):
    return np.asarray(arrays[0])


def _linear(arrays):
    return np.asarray(arrays[0]).T


def _stack_experts(arrays):
    return np.stack([np.asarray(a) for a in arrays])


def _stack_transposed_experts(arrays):
    return np.stack([np.asarray(a).T for a in arrays])
