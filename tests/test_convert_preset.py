"""Hugging Face checkpoint -> preset -> text generation -> served SavedModel.

A tiny random `SwitchTransformersForConditionalGeneration` (untied: one input embedding per
stack, as transformers 5 builds it) with a tiny T5 `spiece.model` stands in for a
downloaded `google/switch-base-8` directory; the commands of the README run on it.
"""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

from tfmoe import cli
from tfmoe.convert.__main__ import main
from tfmoe.models import SwitchSentencePieceTokenizer, SwitchSeq2SeqLM

VOCAB = 260  # the tokenizer's 150 pieces and 100 sentinels fit
SOURCE = "summarize: the cat sat on the mat"
ENCODER_LENGTH = 32
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def converted_preset(tmp_path_factory, tiny_spiece_model):
    """`(hf_dir, hf_model, preset_dir, cli_stdout)`: the CLI run once on a tiny model."""
    hf_dir = tmp_path_factory.mktemp("switch_hf")
    torch.manual_seed(0)
    config = transformers.SwitchTransformersConfig(
        vocab_size=VOCAB,
        d_model=16,
        d_kv=4,
        d_ff=12,
        num_heads=2,
        num_layers=2,
        num_decoder_layers=2,
        num_sparse_encoder_layers=1,
        num_sparse_decoder_layers=1,
        num_experts=2,
        tie_word_embeddings=False,
        decoder_start_token_id=0,
    )
    hf_model = transformers.SwitchTransformersForConditionalGeneration(config).eval()
    hf_model.save_pretrained(hf_dir)
    shutil.copy(tiny_spiece_model, hf_dir / "spiece.model")
    preset_dir = tmp_path_factory.mktemp("switch_preset") / "preset"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(
            [
                "--hf_dir",
                str(hf_dir),
                "--output",
                str(preset_dir),
                f"--encoder_sequence_length={ENCODER_LENGTH}",
                f"--decoder_sequence_length={NEW_TOKENS + 1}",
            ]
        )
    assert status == 0
    return hf_dir, hf_model, preset_dir, stdout.getvalue()


def test_cli_writes_a_preset_with_tokenizer(converted_preset, tiny_spiece_model):
    _, _, preset_dir, stdout = converted_preset
    assert {p.name for p in preset_dir.iterdir()} >= {
        "config.json",
        "model.weights.h5",
        "task.json",
        "preprocessor.json",
        "tokenizer.json",
        "assets",
    }
    assert (preset_dir / "assets" / "tokenizer" / "spiece.model").read_bytes() == (
        tiny_spiece_model.read_bytes()
    )
    config = json.loads((preset_dir / "config.json").read_text())["config"]
    assert config["separate_input_embeddings"] is True and config["tie_embeddings"] is False
    # A progress bar over the tensors, the ignored config fields, the summary.
    assert "tensor" in stdout and "Ignoring config.json fields" in stdout, stdout
    assert "architectures" in stdout and "Saved " in stdout


def test_cli_refuses_a_non_empty_output(converted_preset, capsys):
    hf_dir, _, preset_dir, _ = converted_preset
    assert main(["--hf_dir", str(hf_dir), "--output", str(preset_dir)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err


def test_cli_needs_the_t5_tokenizer(converted_preset, tmp_path, capsys):
    hf_dir, _, _, _ = converted_preset
    copy = tmp_path / "hf"
    shutil.copytree(hf_dir, copy)
    (copy / "spiece.model").unlink()
    assert main(["--hf_dir", str(copy), "--output", str(tmp_path / "preset")]) == 2
    assert "No spiece.model" in capsys.readouterr().err
    assert not (tmp_path / "preset").exists()


def _reference_generate(hf_model, hf_dir):
    """transformers' tokenizer and greedy `generate` on SOURCE: the generated ids."""
    reference = transformers.T5TokenizerFast.from_pretrained(str(hf_dir))
    encoded = reference([SOURCE], return_tensors="pt")
    return encoded["input_ids"].numpy(), hf_model.generate(
        **encoded, do_sample=False, max_new_tokens=NEW_TOKENS, use_cache=False
    ).numpy()


def test_preset_generates_the_text_of_hugging_face(converted_preset):
    hf_dir, hf_model, preset_dir, _ = converted_preset
    lm = SwitchSeq2SeqLM.from_preset(str(preset_dir))
    assert isinstance(lm.preprocessor.tokenizer, SwitchSentencePieceTokenizer)
    assert lm.backbone.separate_input_embeddings
    assert (lm.preprocessor.encoder_sequence_length, lm.preprocessor.decoder_sequence_length) == (
        ENCODER_LENGTH,
        NEW_TOKENS + 1,
    )
    lm.compile(sampler="greedy")  # keras-hub's default sampler is top-k
    source_ids, want = _reference_generate(hf_model, hf_dir)
    # The preset's preprocessor packs the reference tokenizer's ids (`... </s>`).
    packed = lm.preprocessor.generate_preprocess([SOURCE])
    mask = np.asarray(packed["encoder_padding_mask"])[0].astype(bool)
    np.testing.assert_array_equal(np.asarray(packed["encoder_token_ids"])[0][mask], source_ids[0])
    text = lm.generate(SOURCE)
    assert isinstance(text, str)
    assert text == lm.preprocessor.tokenizer.detokenize(want[0].tolist())


def test_export_script_serves_raw_strings(converted_preset, load_script, tmp_path):
    hf_dir, hf_model, preset_dir, _ = converted_preset
    export = load_script("export")
    export.main(
        cli.flags_parser("export.py")(
            [
                "export.py",
                f"--preset={preset_dir}",
                "--name=switch",
                f"--output_dir={tmp_path}",
                f"--sequence_length={ENCODER_LENGTH}",
                f"--max_new_tokens={NEW_TOKENS}",
                "--jit_compile=false",
            ]
        )
    )
    served = tf.saved_model.load(str(tmp_path / "switch" / "1"))
    out = served.signatures["serving_default"](text=tf.constant([SOURCE, ""]))
    _, want = _reference_generate(hf_model, hf_dir)
    ids = out["generated_token_ids"].numpy()
    np.testing.assert_array_equal(ids[0, : want.shape[1] - 1], want[0, 1:])
    tokenizer = SwitchSentencePieceTokenizer(preset_dir / "assets" / "tokenizer" / "spiece.model")
    assert out["generated_text"].numpy()[0].decode() == tokenizer.detokenize(want[0].tolist())


def test_finetune_a_converted_preset_with_frozen_routers(
    converted_preset, load_script, tmp_path, capsys
):
    from tfmoe.models import SwitchClassifier, load_task_preset
    from tfmoe.training import moe_layers

    _, hf_model, preset_dir, _ = converted_preset
    rows = ["text\tlabel"] + [
        f"the {w} runs fast\tverb" if i % 2 else f"a small {w}\tnoun"
        for i, w in enumerate(["cat", "dog", "bug", "file"] * 12)
    ]
    task = tmp_path / "task.tsv"
    task.write_text("\n".join(rows) + "\n")
    out = tmp_path / "ft"
    finetune = load_script("finetune")
    finetune.main(
        cli.flags_parser("finetune.py")(
            [
                "finetune.py",
                f"--init_from={preset_dir}",
                f"--task={task}",
                "--steps=2",
                "--batch_size=4",
                "--sequence_length=16",
                "--freeze_router",
                "--capacity_factor=1.25",
                "--expert_dropout=0.4",
                "--z_loss_weight=0.001",
                "--strategy=cpu",
                "--verbose=0",
                f"--output_dir={out}",
            ]
        )
    )
    stdout = capsys.readouterr().out
    assert "initialised the embedding and encoder from" in stdout and "froze 1 routers" in stdout
    classifier = load_task_preset(str(out / "preset"))
    assert isinstance(classifier, SwitchClassifier)
    assert isinstance(classifier.preprocessor.tokenizer, SwitchSentencePieceTokenizer)
    backbone = classifier.backbone
    assert (backbone.hidden_dim, backbone.num_experts, backbone.tie_embeddings) == (16, 2, False)
    assert (backbone.capacity_factor, backbone.z_loss_weight) == (1.25, 0.001)
    assert backbone.expert_capacity is None  # --capacity_factor replaces the converted one
    # The router trained not at all: still transformers' weights.
    (router,) = [layer.router for layer in moe_layers(classifier)]
    want = hf_model.encoder.block[1].layer[1].mlp.router.classifier.weight.detach().numpy().T
    np.testing.assert_array_equal(np.asarray(router.kernel), want)
