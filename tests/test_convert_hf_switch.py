"""`tfmoe.convert.from_hf_switch` against PyTorch `SwitchTransformersForConditionalGeneration`.

Small random Hugging Face models are saved with `save_pretrained`, converted, and their
logits compared in float32. Most configs have an `expert_capacity` no sequence reaches;
those in `DROPS` drop tokens, which the converted model must drop too.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from tfmoe.convert import from_hf_switch
from tfmoe.convert.__main__ import main
from tfmoe.models import SwitchTransformer

VOCAB = 67

# Random configs, each model exactly as transformers builds it (transformers 5: with
# `tie_word_embeddings=False` the encoder, decoder and lm_head have weights of their own).
CONFIGS = {
    # 4 experts; encoder step 3 (layer 1 of 3), decoder step 2 (layer 1 of 2); tied.
    "tied_e4": dict(
        num_experts=4,
        num_layers=3,
        num_decoder_layers=2,
        num_sparse_encoder_layers=1,
        num_sparse_decoder_layers=1,
        tie_word_embeddings=True,
    ),
    # 8 experts in every layer, deeper decoder, untied (separate input embeddings),
    # gelu, sharded files.
    "untied_e8_every_layer_sharded": dict(
        num_experts=8,
        num_layers=2,
        num_decoder_layers=3,
        num_sparse_encoder_layers=2,
        num_sparse_decoder_layers=3,
        tie_word_embeddings=False,
        dense_act_fn="gelu",
    ),
    # 2 experts, encoder step 2 of 4 layers, 1 decoder layer; short position buckets
    # (inputs reach past max_distance), untied.
    "untied_e2_short_buckets": dict(
        num_experts=2,
        num_layers=4,
        num_decoder_layers=1,
        num_sparse_encoder_layers=2,
        num_sparse_decoder_layers=1,
        tie_word_embeddings=False,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=12,
    ),
    # transformers' edge patterns: 0 sparse encoder layers of 3 -> step 3 -> layer 1 is
    # sparse; 3 sparse decoder layers of 2 -> step 0 -> none. Tied, other special ids.
    "edge_sparse_steps_special_ids": dict(
        num_experts=3,
        num_layers=3,
        num_decoder_layers=2,
        num_sparse_encoder_layers=0,
        num_sparse_decoder_layers=3,
        tie_word_embeddings=True,
        pad_token_id=3,
        eos_token_id=2,
        decoder_start_token_id=3,
        layer_norm_epsilon=1e-5,
    ),
    # Padding kept out of the routers (transformers does not read the option: logits
    # match at real tokens, right padding claiming slots only after them), with drops;
    # silu, 4 heads.
    "ignore_padding_silu": dict(
        expert_capacity=7,
        num_experts=4,
        num_layers=2,
        num_decoder_layers=2,
        num_sparse_encoder_layers=2,
        num_sparse_decoder_layers=1,
        tie_word_embeddings=False,
        dense_act_fn="silu",
        router_ignore_padding_tokens=True,
        num_heads=4,
        d_kv=6,
    ),
    # Training-only options set (jitter, dropout, loss weights): off at inference.
    "jitter_dropout_e6": dict(
        num_experts=6,
        num_layers=2,
        num_decoder_layers=4,
        num_sparse_encoder_layers=1,
        num_sparse_decoder_layers=2,
        tie_word_embeddings=True,
        router_jitter_noise=0.3,
        dropout_rate=0.2,
        router_z_loss_coef=0.01,
        router_aux_loss_coef=0.02,
    ),
    # Expert capacity dropping tokens in both stacks (2 experts, 6 slots each per
    # sequence); padding routed, taking slots, as by default. Equal stack depths, so that
    # transformers' cached `generate` works; untied (its greedy outputs vary).
    "capacity_drops_e2": dict(
        num_experts=2,
        num_layers=2,
        num_decoder_layers=2,
        num_sparse_encoder_layers=2,
        num_sparse_decoder_layers=2,
        tie_word_embeddings=False,
        expert_capacity=6,
    ),
}
SHARDED = {"untied_e8_every_layer_sharded"}
# The stacks in which transformers drops real tokens of `make_inputs()`.
DROPS = {"capacity_drops_e2": ("encoder", "decoder"), "ignore_padding_silu": ("encoder", "decoder")}
GENERATION_CONFIGS = (
    "tied_e4",
    "untied_e8_every_layer_sharded",
    "edge_sparse_steps_special_ids",
    "capacity_drops_e2",
)
# Compared with transformers' cached `generate` (its default), which routes one new
# token per step as tfmoe's cached generation does, so no decoder token is dropped (with
# `use_cache=False` transformers reruns the whole decoder, drops, and generates other
# ids here); the others use `use_cache=False`.
CACHED_GENERATION = {"capacity_drops_e2"}


def save_hf_model(directory, seed=0, max_shard_size=None, **config):
    """Saves a random float32 HF Switch model (every weight perturbed so that norm
    scales and routers are not at their initial values); returns the torch model,
    in eval mode, as transformers builds it."""
    torch.manual_seed(seed)
    hf_config = transformers.SwitchTransformersConfig(
        **{
            **dict(
                vocab_size=VOCAB,
                d_model=24,
                d_kv=5,
                d_ff=20,
                num_heads=3,
                expert_capacity=10_000,
                dropout_rate=0.0,
                router_jitter_noise=0.0,
                decoder_start_token_id=0,
            ),
            **config,
        }
    )
    model = transformers.SwitchTransformersForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.0 + 0.5 * torch.randn_like(p)).add_(0.05 * torch.randn_like(p))
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return model


def make_inputs(seed=1, batch=3, source=30, target=17):
    rng = np.random.default_rng(seed)
    enc_len = np.array([[source], [source - 7], [9]])[:batch]
    dec_len = np.array([[target], [target - 5], [4]])[:batch]
    return {
        "encoder_token_ids": rng.integers(4, VOCAB, (batch, source)),
        "encoder_padding_mask": np.arange(source)[None] < enc_len,
        "decoder_token_ids": rng.integers(4, VOCAB, (batch, target)),
        "decoder_padding_mask": np.arange(target)[None] < dec_len,
    }


def hf_logits(model, inputs):
    as_long = lambda key: torch.tensor(np.asarray(inputs[key]), dtype=torch.long)  # noqa: E731
    with torch.no_grad():
        out = model(
            input_ids=as_long("encoder_token_ids"),
            attention_mask=as_long("encoder_padding_mask"),
            decoder_input_ids=as_long("decoder_token_ids"),
            decoder_attention_mask=as_long("decoder_padding_mask"),
        )
    return out.logits.numpy()


def hf_dropped_tokens(model, inputs):
    """`{"encoder": n, "decoder": n}`: real tokens of `inputs` that transformers' routers
    route to no expert (over capacity), summed over each stack's sparse layers."""
    router_class = transformers.models.switch_transformers.modeling_switch_transformers
    router_class = router_class.SwitchTransformersTop1Router
    counts = {"encoder": 0, "decoder": 0}

    def count(stack):
        real = np.asarray(inputs[f"{stack}_padding_mask"], bool)

        def hook(module, args, output):
            routed = output[0].sum(-1).numpy() > 0  # the capacity-masked one-hot choice
            counts[stack] += int((real & ~routed).sum())

        return hook

    handles = [
        module.register_forward_hook(count(name.split(".")[0]))
        for name, module in model.named_modules()
        if isinstance(module, router_class)
    ]
    try:
        hf_logits(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def _max_abs_diff(tf_model, hf_model, inputs, real_tokens_only=False):
    """Largest logit difference; over the real (unpadded) decoder positions only when
    `real_tokens_only`."""
    got = np.asarray(tf_model(inputs, training=False))
    want = hf_logits(hf_model, inputs)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    if real_tokens_only:
        diff = diff[np.asarray(inputs["decoder_padding_mask"], bool)]
    return float(np.max(diff))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """`converted(name) -> (hf_model, tfmoe_model)`, each config converted once."""
    cache = {}

    def convert(name):
        if name not in cache:
            directory = tmp_path_factory.mktemp(name)
            hf_model = save_hf_model(
                directory,
                seed=sorted(CONFIGS).index(name),
                max_shard_size="20KB" if name in SHARDED else None,
                **CONFIGS[name],
            )
            assert (directory / "model.safetensors.index.json").exists() == (name in SHARDED)
            cache[name] = hf_model, from_hf_switch(directory)
        return cache[name]

    return convert


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_converted_logits_match_hugging_face(converted, name):
    hf_model, model = converted(name)
    assert isinstance(model, SwitchTransformer) and model.preprocessor is None
    hf, backbone = hf_model.config, model.backbone
    assert backbone.num_experts == hf.num_experts
    assert backbone.encoder.sparse_layers == [
        i for i, b in enumerate(hf_model.encoder.block) if b.is_sparse
    ]
    assert backbone.decoder.sparse_layers == [
        i for i, b in enumerate(hf_model.decoder.block) if b.is_sparse
    ]
    assert backbone.tie_embeddings == hf.tie_word_embeddings
    # transformers 5 gives untied models one input embedding per stack.
    assert backbone.separate_input_embeddings == (not hf.tie_word_embeddings)
    assert backbone.router_ignore_padding_tokens == hf.router_ignore_padding_tokens
    assert backbone.expert_capacity == hf.expert_capacity
    inputs = make_inputs()
    dropped = hf_dropped_tokens(hf_model, inputs)
    assert [stack for stack, n in dropped.items() if n > 0] == list(DROPS.get(name, ()))
    diff = _max_abs_diff(model, hf_model, inputs, real_tokens_only=hf.router_ignore_padding_tokens)
    print(f"{name}: max abs logit difference {diff:.2e}, dropped {dropped}")
    assert diff <= 1e-4


@pytest.mark.parametrize("name", GENERATION_CONFIGS)
def test_greedy_generation_matches_hugging_face(converted, name):
    hf_model, model = converted(name)
    inputs = make_inputs()
    new_tokens = 10
    # Both stop a row at its eos and pad it after. use_cache=False where the stacks'
    # depths differ: transformers 5.23's Switch cache breaks with unequal depths.
    want = hf_model.generate(
        input_ids=torch.tensor(inputs["encoder_token_ids"]),
        attention_mask=torch.tensor(inputs["encoder_padding_mask"]).long(),
        do_sample=False,
        max_new_tokens=new_tokens,
        use_cache=name in CACHED_GENERATION,
    ).numpy()
    assert want[0, 0] == model.backbone.decoder_start_token_id
    # Without a preprocessor `generate` takes the decoder prompt too: the start token,
    # then the positions to generate.
    rows = inputs["encoder_token_ids"].shape[0]
    prompt = np.full((rows, new_tokens + 1), model.backbone.pad_token_id, "int32")
    prompt[:, 0] = model.backbone.decoder_start_token_id
    model.compile(sampler="greedy")
    got = model.generate(
        {
            "encoder_token_ids": inputs["encoder_token_ids"],
            "encoder_padding_mask": inputs["encoder_padding_mask"],
            "decoder_token_ids": prompt,
            "decoder_padding_mask": np.arange(new_tokens + 1)[None] < np.ones((rows, 1)),
        },
        stop_token_ids=[model.backbone.eos_token_id],
    )["decoder_token_ids"]
    # transformers stops when every row has ended: the rest of tfmoe's rows is padding.
    got = np.asarray(got)
    np.testing.assert_array_equal(got[:, : want.shape[1]], want)
    assert (got[:, want.shape[1] :] == model.backbone.pad_token_id).all()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, tiny_spiece_model):
    """A tied 4-expert checkpoint with a T5 tokenizer (what the CLI converts)."""
    directory = tmp_path_factory.mktemp("hf_switch")
    model = save_hf_model(directory, **CONFIGS["tied_e4"])
    shutil.copy(tiny_spiece_model, directory / "spiece.model")
    return directory, model


def _copy_with(directory, tmp_path, config_changes=None, drop=(), extra=None):
    """Copy of an HF directory as one safetensors file, with edits."""
    from safetensors.numpy import save_file

    from tfmoe.convert import SafetensorsCheckpoint

    checkpoint = SafetensorsCheckpoint(directory)
    tensors = {k: checkpoint.get(k) for k in checkpoint.keys() if k not in drop}
    tensors.update(extra or {})
    save_file(tensors, str(tmp_path / "model.safetensors"))
    config = json.loads((directory / "config.json").read_text())
    config.update(config_changes or {})
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_missing_and_unmapped_weights_are_listed(hf_dir, tmp_path):
    directory, _ = hf_dir
    dropped = "decoder.block.1.layer.2.mlp.experts.expert_3.wo.weight"
    path = _copy_with(
        directory,
        tmp_path,
        drop=[dropped],
        extra={"encoder.block.0.layer.1.mlp.wi.bias": np.zeros(20, np.float32)},
    )
    with pytest.raises(ValueError, match="1 missing") as error:
        from_hf_switch(path)
    assert dropped in str(error.value)
    assert "1 unmapped weight(s) [encoder.block.0.layer.1.mlp.wi.bias]" in str(error.value)


def test_config_that_disagrees_with_the_weights_is_reported(hf_dir, tmp_path):
    directory, _ = hf_dir
    path = _copy_with(directory, tmp_path, config_changes={"num_experts": 2})
    with pytest.raises(ValueError, match="unmapped.*expert_2"):
        from_hf_switch(path)


def test_different_stack_embeddings_need_separate_input_embeddings(hf_dir, tmp_path):
    directory, _ = hf_dir
    extra = {
        "encoder.embed_tokens.weight": np.ones((VOCAB, 24), np.float32),
        "decoder.embed_tokens.weight": np.zeros((VOCAB, 24), np.float32),
        "lm_head.weight": np.ones((VOCAB, 24), np.float32),
    }
    path = _copy_with(
        directory, tmp_path, config_changes={"tie_word_embeddings": False}, extra=extra
    )
    assert from_hf_switch(path).backbone.separate_input_embeddings
    with pytest.raises(ValueError, match="differ: convert with separate_input_embeddings"):
        from_hf_switch(path, separate_input_embeddings=False)


def test_shape_mismatch_is_reported(hf_dir, tmp_path):
    directory, _ = hf_dir
    path = _copy_with(directory, tmp_path, config_changes={"d_ff": 21})
    with pytest.raises(ValueError, match="shape mismatch.*mlp.wi.weight"):
        from_hf_switch(path)


@pytest.mark.parametrize(
    "field,value",
    [
        ("router_bias", True),
        ("dense_act_fn", "gated-gelu"),
        ("model_type", "t5"),
        ("router_type", "experts_choose"),
        ("scale_decoder_outputs", True),
    ],
)
def test_unsupported_config_names_the_field(hf_dir, tmp_path, field, value):
    path = _copy_with(hf_dir[0], tmp_path, config_changes={field: value})
    with pytest.raises(ValueError, match=f"`{field}`"):
        from_hf_switch(path)


def test_bfloat16_checkpoint_is_read_as_float32(hf_dir, tmp_path):
    from safetensors.torch import save_file

    from tfmoe.convert import SafetensorsCheckpoint

    save_file(
        {"w": torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.bfloat16), "x": torch.ones(3)},
        str(tmp_path / "model.safetensors"),
    )
    checkpoint = SafetensorsCheckpoint(tmp_path)
    assert checkpoint.keys() == ["w", "x"]
    np.testing.assert_array_equal(checkpoint.get("w"), [[1.5, -2.0], [0.25, 3.0]])
    assert checkpoint.get("w").dtype == np.float32


def test_directory_without_safetensors_fails_clearly(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        from_hf_switch(tmp_path)


def _corrupt_tensors(path, names):
    """Overwrites the data bytes of tensors `names` of safetensors file `path` with 0xFF
    (NaN in float32), leaving the header intact."""
    data = bytearray(path.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    for name in names:
        begin, end = header[name]["data_offsets"]
        data[8 + header_size + begin : 8 + header_size + end] = b"\xff" * (end - begin)
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTED = "encoder.block.1.layer.1.mlp.experts.expert_3.wo.weight"
BROKEN_CHECKPOINTS = {
    "missing directory": (lambda d: shutil.rmtree(d), "No such directory"),
    "no weights file": (lambda d: (d / "model.safetensors").unlink(), "No model.safetensors"),
    "truncated weights": (
        lambda d: _truncate(d / "model.safetensors"),
        "model.safetensors is not a readable safetensors file",
    ),
    "empty weights": (
        lambda d: (d / "model.safetensors").write_bytes(b""),
        r"model.safetensors is not a readable safetensors file \(empty file\)",
    ),
    "bad json config": (
        lambda d: (d / "config.json").write_text('{"num_experts": 4,'),
        "config.json is not valid JSON",
    ),
    "num_experts mismatch": (
        lambda d: (d / "config.json").write_text(
            json.dumps(dict(json.loads((d / "config.json").read_text()), num_experts=2))
        ),
        "num_experts=2 but the checkpoint has 4 experts",
    ),
    "non-finite weights": (
        lambda d: _corrupt_tensors(d / "model.safetensors", [CORRUPTED, "shared.weight"]),
        rf"NaN or Inf.*2 non-finite weight\(s\) \[{CORRUPTED}, shared.weight\]",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CHECKPOINTS))
def test_cli_reports_a_broken_checkpoint_in_one_line(hf_dir, tmp_path, capsys, case):
    import re

    break_it, message = BROKEN_CHECKPOINTS[case]
    directory = tmp_path / "hf"
    shutil.copytree(hf_dir[0], directory)
    break_it(directory)
    output = tmp_path / "preset"
    assert main(["--hf_dir", str(directory), "--output", str(output)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("python -m tfmoe.convert: error: "), errors
    assert re.search(message, errors[0]), errors[0]
    assert not output.exists()


def test_cli_error_exits_nonzero_with_only_the_error_line(tmp_path):
    """A bad directory fails before TensorFlow is imported (no log lines either)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfmoe.convert",
            "--hf_dir",
            str(tmp_path / "nowhere"),
            "--output",
            str(tmp_path / "preset"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"python -m tfmoe.convert: error: No such directory: '{tmp_path / 'nowhere'}'."
    ]


def test_cli_capacity_options_are_checked(hf_dir, tmp_path, capsys):
    args = ["--hf_dir", str(hf_dir[0]), "--output", str(tmp_path / "preset")]
    assert main(args + ["--expert_capacity=0"]) == 2
    assert "`expert_capacity` must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one capacity option or the other
        main(args + ["--expert_capacity=3", "--eval_capacity_factor=2"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_separate_input_embeddings_is_a_serialized_backbone_option(converted):
    from tfmoe.models import SwitchBackbone, SwitchSeq2SeqBackbone

    _, model = converted("untied_e2_short_buckets")
    config = model.backbone.get_config()
    assert config["separate_input_embeddings"] is True
    rebuilt = SwitchSeq2SeqBackbone.from_config(config)
    assert rebuilt.encoder_token_embedding is not rebuilt.token_embedding
    assert rebuilt.count_params() == model.backbone.count_params()
    with pytest.raises(ValueError, match="separate_input_embeddings"):
        SwitchBackbone(VOCAB, 8, 2, 8, 1, layout="decoder_only", separate_input_embeddings=True)
