"""`tfmoe.convert.from_hf_switch` against PyTorch `SwitchTransformersForConditionalGeneration`.

Small random Hugging Face models are saved with `save_pretrained`, converted, and their
logits compared in float32 on inputs where neither side drops a token (Hugging Face
`expert_capacity` and the converted `eval_capacity_factor` are large enough).
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

CONFIGS = {
    # 4 experts; encoder step 3 (layer 1 of 3), decoder step 2 (layer 1 of 2); tied.
    "tied_e4": dict(num_experts=4, num_layers=3, num_decoder_layers=2,
                    num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
                    tie_word_embeddings=True),
    # 8 experts in every layer, deeper decoder, untied lm head, gelu, sharded files.
    "untied_e8_every_layer_sharded": dict(
        num_experts=8, num_layers=2, num_decoder_layers=3, num_sparse_encoder_layers=2,
        num_sparse_decoder_layers=3, tie_word_embeddings=False, dense_act_fn="gelu"),
    # 2 experts, encoder step 2 of 4 layers, 1 decoder layer; short position buckets
    # (inputs reach past max_distance), untied.
    "untied_e2_short_buckets": dict(
        num_experts=2, num_layers=4, num_decoder_layers=1, num_sparse_encoder_layers=2,
        num_sparse_decoder_layers=1, tie_word_embeddings=False,
        relative_attention_num_buckets=8, relative_attention_max_distance=12),
}
SHARDED = {"untied_e8_every_layer_sharded"}


def save_hf_model(directory, seed=0, max_shard_size=None, **config):
    """Saves a random float32 HF Switch model (every weight perturbed so that norm
    scales and routers are not at their initial values); returns the torch model."""
    torch.manual_seed(seed)
    hf_config = transformers.SwitchTransformersConfig(**{
        **dict(vocab_size=VOCAB, d_model=24, d_kv=5, d_ff=20, num_heads=3,
               expert_capacity=10_000, dropout_rate=0.0, router_jitter_noise=0.0),
        **config})
    model = transformers.SwitchTransformersForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.0 + 0.5 * torch.randn_like(p)).add_(0.05 * torch.randn_like(p))
        # transformers 5 unties the stacks' input embeddings along with the lm head;
        # the released checkpoints (and tfmoe) share one input embedding.
        for stack in (model.encoder, model.decoder):
            stack.embed_tokens.weight.copy_(model.shared.weight)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return model


def make_inputs(seed=1, batch=3, source=30, target=17):
    rng = np.random.default_rng(seed)
    enc_len = np.array([[source], [source - 7], [9]])[:batch]
    dec_len = np.array([[target], [target - 5], [4]])[:batch]
    return {
        "encoder_token_ids": rng.integers(2, VOCAB, (batch, source)),
        "encoder_padding_mask": np.arange(source)[None] < enc_len,
        "decoder_token_ids": rng.integers(2, VOCAB, (batch, target)),
        "decoder_padding_mask": np.arange(target)[None] < dec_len,
    }


def hf_logits(model, inputs):
    as_long = lambda key: torch.tensor(np.asarray(inputs[key]), dtype=torch.long)  # noqa: E731
    with torch.no_grad():
        out = model(input_ids=as_long("encoder_token_ids"),
                    attention_mask=as_long("encoder_padding_mask"),
                    decoder_input_ids=as_long("decoder_token_ids"),
                    decoder_attention_mask=as_long("decoder_padding_mask"))
    return out.logits.numpy()


def _max_abs_diff(tf_model, hf_model, inputs):
    got = np.asarray(tf_model(inputs, training=False))
    want = hf_logits(hf_model, inputs)
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_converted_logits_match_hugging_face(tmp_path, name):
    hf_model = save_hf_model(tmp_path, max_shard_size="20KB" if name in SHARDED else None,
                             **CONFIGS[name])
    assert (tmp_path / "model.safetensors.index.json").exists() == (name in SHARDED)
    model = from_hf_switch(tmp_path)
    assert isinstance(model, SwitchTransformer) and model.preprocessor is None
    hf, backbone = hf_model.config, model.backbone
    assert backbone.num_experts == hf.num_experts
    assert backbone.encoder.sparse_layers == [
        i for i, b in enumerate(hf_model.encoder.block) if b.is_sparse]
    assert backbone.decoder.sparse_layers == [
        i for i, b in enumerate(hf_model.decoder.block) if b.is_sparse]
    assert backbone.tie_embeddings == hf.tie_word_embeddings
    assert not backbone.router_ignore_padding_tokens
    diff = _max_abs_diff(model, hf_model, make_inputs())
    print(f"{name}: max abs logit difference {diff:.2e}")
    assert diff <= 1e-4


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf_switch")
    model = save_hf_model(directory, **CONFIGS["tied_e4"])
    return directory, model


def test_cli_writes_a_loadable_keras_file(hf_dir, tmp_path):
    import keras

    directory, hf_model = hf_dir
    output = tmp_path / "model.keras"
    assert main(["--hf_dir", str(directory), "--output", str(output)]) == 0
    loaded = keras.saving.load_model(output)
    assert _max_abs_diff(loaded, hf_model, make_inputs(batch=2)) <= 1e-4


def test_greedy_generation_matches_hugging_face(hf_dir):
    directory, hf_model = hf_dir
    inputs = make_inputs()
    model = from_hf_switch(directory)
    # use_cache=False: transformers 5.23's Switch cache breaks with unequal stack depths.
    want = hf_model.generate(
        input_ids=torch.tensor(inputs["encoder_token_ids"]),
        attention_mask=torch.tensor(inputs["encoder_padding_mask"]).long(),
        decoder_start_token_id=model.backbone.decoder_start_token_id, do_sample=False,
        max_new_tokens=9, min_new_tokens=9, use_cache=False).numpy()
    # Without a preprocessor `generate` takes the decoder prompt too: the start token,
    # then 9 positions to generate.
    rows = inputs["encoder_token_ids"].shape[0]
    prompt = np.zeros((rows, 10), "int32")
    prompt[:, 0] = model.backbone.decoder_start_token_id
    model.compile(sampler="greedy")
    got = model.generate(
        {"encoder_token_ids": inputs["encoder_token_ids"],
         "encoder_padding_mask": inputs["encoder_padding_mask"],
         "decoder_token_ids": prompt,
         "decoder_padding_mask": np.arange(10)[None] < np.ones((rows, 1))},
        stop_token_ids=None)["decoder_token_ids"]
    np.testing.assert_array_equal(np.asarray(got), want)


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
    path = _copy_with(directory, tmp_path, drop=[dropped],
                      extra={"encoder.block.0.layer.1.mlp.wi.bias": np.zeros(20, np.float32)})
    with pytest.raises(ValueError, match="1 missing") as error:
        from_hf_switch(path)
    assert dropped in str(error.value)
    assert "1 unmapped weight(s) [encoder.block.0.layer.1.mlp.wi.bias]" in str(error.value)


def test_config_that_disagrees_with_the_weights_is_reported(hf_dir, tmp_path):
    directory, _ = hf_dir
    path = _copy_with(directory, tmp_path, config_changes={"num_experts": 2})
    with pytest.raises(ValueError, match="unmapped.*expert_2"):
        from_hf_switch(path)


def test_separate_stack_input_embedding_is_rejected(hf_dir, tmp_path):
    directory, _ = hf_dir
    extra = {"decoder.embed_tokens.weight": np.ones((VOCAB, 24), np.float32)}
    with pytest.raises(ValueError, match="decoder.embed_tokens.weight.*differ"):
        from_hf_switch(_copy_with(directory, tmp_path, extra=extra))


def test_shape_mismatch_is_reported(hf_dir, tmp_path):
    directory, _ = hf_dir
    path = _copy_with(directory, tmp_path, config_changes={"d_ff": 21})
    with pytest.raises(ValueError, match="shape mismatch.*mlp.wi.weight"):
        from_hf_switch(path)


@pytest.mark.parametrize("field,value", [
    ("router_bias", True), ("dense_act_fn", "gated-gelu"), ("model_type", "t5")])
def test_unsupported_config_names_the_field(hf_dir, tmp_path, field, value):
    path = _copy_with(hf_dir[0], tmp_path, config_changes={field: value})
    with pytest.raises(ValueError, match=f"`{field}`"):
        from_hf_switch(path)


def test_bfloat16_checkpoint_is_read_as_float32(hf_dir, tmp_path):
    from safetensors.torch import save_file

    from tfmoe.convert import SafetensorsCheckpoint

    save_file({"w": torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.bfloat16),
               "x": torch.ones(3)}, str(tmp_path / "model.safetensors"))
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
    header = json.loads(data[8:8 + header_size])
    for name in names:
        begin, end = header[name]["data_offsets"]
        data[8 + header_size + begin:8 + header_size + end] = b"\xff" * (end - begin)
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


CORRUPTED = "encoder.block.1.layer.1.mlp.experts.expert_3.wo.weight"
BROKEN_CHECKPOINTS = {
    "missing directory": (lambda d: shutil.rmtree(d), "No such directory"),
    "no weights file": (lambda d: (d / "model.safetensors").unlink(), "No model.safetensors"),
    "truncated weights": (lambda d: _truncate(d / "model.safetensors"),
                          "model.safetensors is not a readable safetensors file"),
    "empty weights": (lambda d: (d / "model.safetensors").write_bytes(b""),
                      r"model.safetensors is not a readable safetensors file \(empty file\)"),
    "bad json config": (lambda d: (d / "config.json").write_text('{"num_experts": 4,'),
                        "config.json is not valid JSON"),
    "num_experts mismatch": (
        lambda d: (d / "config.json").write_text(json.dumps(
            dict(json.loads((d / "config.json").read_text()), num_experts=2))),
        "num_experts=2 but the checkpoint has 4 experts"),
    "non-finite weights": (
        lambda d: _corrupt_tensors(d / "model.safetensors", [CORRUPTED, "shared.weight"]),
        rf"NaN or Inf.*2 non-finite weight\(s\) \[{CORRUPTED}, shared.weight\]"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CHECKPOINTS))
def test_cli_reports_a_broken_checkpoint_in_one_line(hf_dir, tmp_path, capsys, case):
    import re

    break_it, message = BROKEN_CHECKPOINTS[case]
    directory = tmp_path / "hf"
    shutil.copytree(hf_dir[0], directory)
    break_it(directory)
    output = tmp_path / "model.keras"
    assert main(["--hf_dir", str(directory), "--output", str(output)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("python -m tfmoe.convert: error: "), errors
    assert re.search(message, errors[0]), errors[0]
    assert not output.exists()


def test_cli_error_exits_nonzero_with_only_the_error_line(tmp_path):
    """A bad directory fails before TensorFlow is imported (no log lines either)."""
    result = subprocess.run(
        [sys.executable, "-m", "tfmoe.convert", "--hf_dir", str(tmp_path / "nowhere"),
         "--output", str(tmp_path / "model.keras")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"python -m tfmoe.convert: error: No such directory: '{tmp_path / 'nowhere'}'."]
