"""Preset registry: architecture configs of the released Switch checkpoints, GLaM-style
decoders and tiny CPU models.

Each preset has a `kind`: `"seq2seq"` presets build `SwitchTransformer` (=
`SwitchSeq2SeqLM`; and, encoder only, `SwitchClassifier` = `SwitchTextClassifier`);
`"causal_lm"` presets build `SwitchDecoderLM` (= `SwitchCausalLM`).

Sources: Switch dimensions follow the released T5X "switch_classic" configs that the
Hugging Face `google/switch-*` checkpoints were converted from (flaxformer
`t5x/configs/moe/models/switch_classic_{base,large,xxl,c}.gin`): base `d_ff` 3072 and
large `d_ff` 4096 with ReLU and tied embeddings, XXL with GEGLU and an untied output
layer, C with 30 heads of size 64 (the paper's Table 9 says 32) and an untied output
layer. GLaM shapes follow the GLaM paper's Table 4 (64 experts, top-2 routing in every
other layer). See `tfmoe/models/README.md` for the parameter table.
"""

SEQ2SEQ = "seq2seq"
CAUSAL_LM = "causal_lm"

_T5_BASE = dict(
    vocabulary_size=32128,
    hidden_dim=768,
    num_heads=12,
    key_value_dim=64,
    intermediate_dim=3072,
    num_layers=12,
    num_decoder_layers=12,
    activation="relu",
    gated=False,
    dropout=0.1,
    tie_embeddings=True,
    num_experts=0,
    sparse_step=2,
)

_SWITCH_LARGE = dict(
    _T5_BASE,
    hidden_dim=1024,
    num_heads=16,
    intermediate_dim=4096,
    num_layers=24,
    num_decoder_layers=24,
)

_SWITCH_XXL = dict(
    _T5_BASE,
    hidden_dim=4096,
    num_heads=64,
    intermediate_dim=10240,
    num_layers=24,
    num_decoder_layers=24,
    activation="gelu",
    gated=True,
    tie_embeddings=False,
    eval_capacity_factor=4.0,
)

_SWITCH_C = dict(
    _T5_BASE,
    hidden_dim=2080,
    num_heads=32,
    intermediate_dim=6144,
    num_layers=15,
    num_decoder_layers=15,
    sparse_step=1,
    tie_embeddings=False,
    capacity_factor=1.0,
)

# The CPU-scale decoders balance ten times harder than the paper's 0.01 (measurements in
# docs/results/compare.md). The tiny ones train a few hundred steps of 1,024 tokens
# (`make demo`): a young router moves between batches, and at 0.01 the busiest expert of a
# batch overflows (glam_tiny_8: up to 7.7% of assignments dropped over steps 100-200; 0.1
# keeps it under 3% at the same validation loss). The small ones spread 4,096 tokens over up
# to 64 experts: at 0.01 the busiest of 32 / 64 experts still takes 1.2-1.5x its share after
# 2,200 steps and the overflow costs loss; 0.1 brings it to 1.04-1.17x and lowers the
# validation loss of both (GCIDE, seed 0).
_STRONG_BALANCE = dict(load_balance_weight=0.1)

_TINY = dict(
    vocabulary_size=8192,
    hidden_dim=128,
    num_heads=4,
    key_value_dim=32,
    intermediate_dim=512,
    num_layers=2,
    num_decoder_layers=2,
    activation="relu",
    gated=False,
    dropout=0.0,
    tie_embeddings=True,
    num_experts=0,
    sparse_step=2,
)

_GLAM_BASE = dict(
    vocabulary_size=32128,
    hidden_dim=768,
    num_heads=12,
    key_value_dim=64,
    intermediate_dim=3072,
    num_layers=12,
    activation="gelu",
    gated=False,
    dropout=0.0,
    tie_embeddings=True,
    num_experts=64,
    sparse_step=2,
    top_k=2,
)

_TINY_LM = dict(
    vocabulary_size=8192,
    hidden_dim=128,
    num_heads=4,
    key_value_dim=32,
    intermediate_dim=512,
    num_layers=4,
    activation="gelu",
    gated=True,
    dropout=0.0,
    tie_embeddings=True,
    num_experts=0,
    sparse_step=2,
)


# Capacity-limited CPU scale: a dense twin small enough that ~10M training tokens
# (GCIDE) saturate it, and sparse variants with the same FLOPs per token. Routing groups of
# 4,096 tokens (flaxformer's largest) keep 80 slots per expert at 64 experts and capacity
# factor 1.25: with 1,024-token groups 64 experts drop 5-7% of assignments to the end.
_SMALL_LM = dict(
    vocabulary_size=8192,
    hidden_dim=64,
    num_heads=4,
    key_value_dim=16,
    intermediate_dim=256,
    num_layers=4,
    activation="gelu",
    gated=True,
    dropout=0.0,
    tie_embeddings=True,
    num_experts=0,
    sparse_step=1,
    group_size=4096,
)


def _preset(kind, description, **config):
    return {"kind": kind, "description": description, "config": config}


PRESETS = {
    "t5_base": _preset(
        SEQ2SEQ, "T5 v1.0 Base, dense baseline of the Switch-Base models.", **_T5_BASE
    ),
    **{
        f"switch_base_{e}": _preset(
            SEQ2SEQ,
            f"Switch-Base, {e} experts, top-1 in every other layer.",
            **dict(_T5_BASE, num_experts=e),
        )
        for e in (8, 16, 32, 64, 128, 256)
    },
    "switch_large_128": _preset(
        SEQ2SEQ,
        "Switch-Large, 128 experts, top-1 in every other layer.",
        **dict(_SWITCH_LARGE, num_experts=128),
    ),
    "switch_xxl_128": _preset(
        SEQ2SEQ,
        "Switch-XXL, 128 GEGLU experts, top-1 in every other layer.",
        **dict(_SWITCH_XXL, num_experts=128),
    ),
    "switch_c_2048": _preset(
        SEQ2SEQ,
        "Switch-C, 2048 experts, top-1 in every layer.",
        **dict(_SWITCH_C, num_experts=2048),
    ),
    "switch_tiny_8": _preset(
        SEQ2SEQ,
        "Tiny CPU encoder-decoder, 8 experts, top-1 in every other layer.",
        **dict(_TINY, num_experts=8),
    ),
    "dense_tiny": _preset(
        SEQ2SEQ, "Tiny CPU encoder-decoder, dense baseline of switch_tiny_8.", **_TINY
    ),
    "glam_base_64e": _preset(
        CAUSAL_LM, "GLaM (0.1B/64E) shape: decoder-only, top-2 in every other layer.", **_GLAM_BASE
    ),
    "glam_1b_64e": _preset(
        CAUSAL_LM,
        "GLaM (1.7B/64E) shape: decoder-only, top-2 in every other layer.",
        **dict(
            _GLAM_BASE,
            hidden_dim=2048,
            num_heads=16,
            key_value_dim=128,
            intermediate_dim=8192,
            num_layers=24,
        ),
    ),
    "glam_8b_64e": _preset(
        CAUSAL_LM,
        "GLaM (8B/64E) shape: decoder-only, top-2 in every other layer.",
        **dict(
            _GLAM_BASE,
            hidden_dim=4096,
            num_heads=32,
            key_value_dim=128,
            intermediate_dim=16384,
            num_layers=32,
        ),
    ),
    "glam_64b_64e": _preset(
        CAUSAL_LM,
        "GLaM (64B/64E) shape: decoder-only, top-2 in every other layer.",
        **dict(
            _GLAM_BASE,
            hidden_dim=8192,
            num_heads=128,
            key_value_dim=128,
            intermediate_dim=32768,
            num_layers=64,
        ),
    ),
    "glam_tiny_8": _preset(
        CAUSAL_LM,
        "Tiny CPU decoder-only LM, 8 half-width GEGLU experts, top-2 in every layer "
        "(FLOPs per token of dense_lm_tiny).",
        **dict(
            _TINY_LM,
            intermediate_dim=_TINY_LM["intermediate_dim"] // 2,
            num_experts=8,
            top_k=2,
            sparse_step=1,
            **_STRONG_BALANCE,
        ),
    ),
    "switch_lm_tiny_8": _preset(
        CAUSAL_LM,
        "Tiny CPU decoder-only LM, 8 GEGLU experts, top-1 in every other layer.",
        **dict(_TINY_LM, num_experts=8, top_k=1, **_STRONG_BALANCE),
    ),
    "dense_lm_tiny": _preset(
        CAUSAL_LM,
        "Tiny CPU decoder-only LM, dense twin of switch_lm_tiny_8 and glam_tiny_8.",
        **_TINY_LM,
    ),
    "dense_lm_small": _preset(
        CAUSAL_LM,
        "Small CPU decoder-only LM (d_model 64), dense twin of the *_lm_small_* presets.",
        **_SMALL_LM,
    ),
    **{
        f"switch_lm_small_{e}": _preset(
            CAUSAL_LM,
            f"Small CPU decoder-only LM, {e} top-1 experts in every layer "
            "(FLOPs per token of dense_lm_small).",
            **dict(_SMALL_LM, num_experts=e, top_k=1, **_STRONG_BALANCE),
        )
        for e in (8, 16, 32, 64)
    },
    **{
        f"glam_lm_small_{e}": _preset(
            CAUSAL_LM,
            f"Small CPU decoder-only LM, {e} top-2 experts of half width in every "
            "layer (FLOPs per token of dense_lm_small).",
            **dict(
                _SMALL_LM,
                intermediate_dim=_SMALL_LM["intermediate_dim"] // 2,
                num_experts=e,
                top_k=2,
                **_STRONG_BALANCE,
            ),
        )
        for e in (8, 16)
    },
}


def list_presets(kind=None):
    """Names of all presets, or of those of one `kind` (`"seq2seq"` / `"causal_lm"`)."""
    if kind is not None and kind not in (SEQ2SEQ, CAUSAL_LM):
        raise ValueError(f"`kind` must be None, {SEQ2SEQ!r} or {CAUSAL_LM!r}, got {kind!r}.")
    return [name for name, p in PRESETS.items() if kind is None or p["kind"] == kind]


def get_preset(name, kind=None):
    """The preset entry `{"kind", "description", "config"}` of `name` (config copied).

    Raises:
      ValueError: unknown `name`, or a preset of another `kind`; the message lists the
        valid names.
    """
    valid = list_presets(kind)
    if name not in PRESETS or name not in valid:
        what = (
            "Unknown preset"
            if name not in PRESETS
            else (
                f"Preset {name!r} is a {PRESETS[name]['kind']!r} preset, not {kind!r}; "
                "unusable here"
            )
        )
        raise ValueError(f"{what}: {name!r}. Valid preset names: {', '.join(valid)}.")
    entry = PRESETS[name]
    return {
        "kind": entry["kind"],
        "description": entry["description"],
        "config": dict(entry["config"]),
    }
