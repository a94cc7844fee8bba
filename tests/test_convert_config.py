"""Hugging Face Switch config.json -> `SwitchTransformer` arguments (no torch needed)."""

import json

import pytest

from tfmoe.convert import read_hf_config, switch_transformer_arguments
from tfmoe.convert.__main__ import main
from tfmoe.convert.hf_switch import HF_DEFAULTS

# Fields of google/switch-base-8's config.json that matter here.
SWITCH_BASE_8 = dict(
    d_ff=3072,
    d_kv=64,
    d_model=768,
    decoder_sparse_step=2,
    decoder_start_token_id=0,
    dense_act_fn="relu",
    encoder_sparse_step=2,
    eos_token_id=1,
    num_decoder_layers=12,
    num_experts=8,
    num_heads=12,
    num_layers=12,
    num_sparse_decoder_layers=6,
    num_sparse_encoder_layers=6,
    pad_token_id=0,
    tie_word_embeddings=True,
    vocab_size=32128,
    model_type="switch_transformers",
)


def _arguments(**fields):
    return switch_transformer_arguments(dict(HF_DEFAULTS, **fields))


def test_switch_base_8_matches_the_preset_architecture():
    from tfmoe.models import SwitchSeq2SeqBackbone

    args = _arguments(**SWITCH_BASE_8)
    preset = SwitchSeq2SeqBackbone.builtin_preset_config("switch_base_8")
    for key in (
        "vocabulary_size",
        "hidden_dim",
        "num_heads",
        "key_value_dim",
        "intermediate_dim",
        "num_layers",
        "num_decoder_layers",
        "num_experts",
        "sparse_step",
        "activation",
        "gated",
        "tie_embeddings",
    ):
        assert args[key] == preset.get(key, args[key]), key
    assert args["decoder_sparse_step"] == 2
    assert args["expert_capacity"] == 64  # HF default: slots per expert and sequence
    assert "eval_capacity_factor" not in args
    assert args["router_ignore_padding_tokens"] is False


def test_sparse_step_follows_hugging_face():
    # Stored steps win (as when transformers loads a config.json) ...
    args = _arguments(num_layers=6, num_sparse_encoder_layers=1, encoder_sparse_step=3)
    assert args["sparse_step"] == 3
    # ... otherwise num_layers // num_sparse_layers, and num_layers for none.
    args = _arguments(
        num_layers=6, num_decoder_layers=4, num_sparse_encoder_layers=2, num_sparse_decoder_layers=0
    )
    assert (args["sparse_step"], args["decoder_sparse_step"]) == (3, 4)
    assert _arguments(num_layers=5, num_decoder_layers=None)["num_decoder_layers"] == 5


def test_special_ids_and_training_options():
    args = _arguments(
        eos_token_id=[2],
        pad_token_id=3,
        dropout_rate=0.2,
        router_jitter_noise=0.05,
        router_z_loss_coef=0.01,
        router_aux_loss_coef=0.02,
        dense_act_fn="gelu",
    )
    assert (args["eos_token_id"], args["pad_token_id"], args["decoder_start_token_id"]) == (2, 3, 3)
    assert (
        args["dropout"],
        args["jitter_noise"],
        args["z_loss_weight"],
        args["load_balance_weight"],
        args["activation"],
    ) == (0.2, 0.05, 0.01, 0.02, "gelu")


@pytest.mark.parametrize(
    "field,value",
    [
        ("router_bias", True),
        ("dense_act_fn", "gated-gelu"),
        ("dense_act_fn", "gelu_new"),
        ("model_type", "t5"),
        ("is_encoder_decoder", False),
        ("eos_token_id", [1, 2]),
        ("expert_capacity", 0),
        ("expert_capacity", None),
        ("expert_capacity", 2.5),
    ],
)
def test_unsupported_fields_are_named(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        _arguments(**{field: value})


def test_decoder_start_id_from_generation_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"num_layers": 2}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"decoder_start_token_id": 5}))
    config = read_hf_config(tmp_path)
    assert config["num_layers"] == 2 and config["num_experts"] == 8  # HF default
    assert switch_transformer_arguments(config)["decoder_start_token_id"] == 5


def test_missing_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_hf_config(tmp_path)
    assert main(["--hf_dir", str(tmp_path), "--output", str(tmp_path / "preset")]) == 2


def test_unknown_fields_are_named():
    with pytest.raises(ValueError, match="`moe_layer_type`, `scale_attention`"):
        _arguments(scale_attention=True, moe_layer_type="x")


def test_fields_without_effect_are_ignored_with_a_log_line(caplog):
    with caplog.at_level("INFO", logger="tfmoe.convert"):
        args = _arguments(
            **SWITCH_BASE_8,
            architectures=["X"],
            use_cache=True,
            initializer_factor=2.0,
            max_length=20,
        )
    ignored = [r.getMessage() for r in caplog.records if "Ignoring" in r.getMessage()]
    assert ignored == [
        "Ignoring config.json fields that do not change inference: "
        "architectures, initializer_factor, max_length, use_cache"
    ]
    assert args["hidden_dim"] == 768


@pytest.mark.parametrize(
    "field,value",
    [
        ("router_type", "experts_choose"),
        ("num_selected_experts", 2),
        ("batch_prioritized_routing", True),
        ("is_gated_act", True),
        ("hidden_size", 512),
    ],
)
def test_routing_and_gating_fields_tfmoe_cannot_reproduce_are_named(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        _arguments(**{field: value})


def test_router_ignore_padding_tokens_is_kept():
    assert _arguments(router_ignore_padding_tokens=True)["router_ignore_padding_tokens"] is True
    assert _arguments()["router_ignore_padding_tokens"] is False
