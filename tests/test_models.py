"""Model zoo (the keras-hub tasks under the zoo names): shapes, masks, causality, cached
generation, saving, presets, counts."""

from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest

import tfmoe.models as models
from tfmoe.layers import DenseFeedForward, SwitchFeedForward, Top2FeedForward
from tfmoe.models import (
    SwitchCausalLM,
    SwitchClassifier,
    SwitchDecoderLM,
    SwitchSeq2SeqLM,
    SwitchTextClassifier,
    SwitchTransformer,
)

VOCAB = 97
# Tiny shapes on top of the tiny presets, with a capacity large enough that no token is
# ever dropped (so cache / no-cache and perturbation comparisons are exact).
SMALL = dict(
    vocabulary_size=VOCAB,
    hidden_dim=32,
    num_heads=2,
    key_value_dim=8,
    intermediate_dim=32,
    eval_capacity_factor=64.0,
)


def _seq2seq_inputs(seed=0, batch=2, source=7, target=5):
    rng = np.random.default_rng(seed)
    return {
        "encoder_token_ids": rng.integers(2, VOCAB, (batch, source)).astype("int32"),
        "encoder_padding_mask": np.array([[1] * source, [1] * (source - 3) + [0] * 3], bool)[
            :batch
        ],
        "decoder_token_ids": rng.integers(2, VOCAB, (batch, target)).astype("int32"),
        "decoder_padding_mask": np.array([[1] * target, [1] * (target - 1) + [0]], bool)[:batch],
    }


def _lm_inputs(seed=0, batch=2, length=6):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(2, VOCAB, (batch, length)).astype("int32"),
        "padding_mask": np.array([[1] * length, [1] * (length - 2) + [0] * 2], bool)[:batch],
    }


@pytest.fixture(scope="module")
def seq2seq():
    return SwitchTransformer.from_preset("switch_tiny_8", **SMALL)


@pytest.fixture(scope="module")
def glam():
    return SwitchDecoderLM.from_preset("glam_tiny_8", **SMALL)


# Shapes, masks, causality --------------------------------------------------------------


def test_seq2seq_shapes_and_aux_losses(seq2seq):
    inputs = _seq2seq_inputs()
    logits = seq2seq(inputs)
    assert logits.shape == (2, 5, VOCAB) and logits.dtype == "float32"
    assert np.isfinite(np.asarray(logits)).all()
    seq2seq(inputs, training=True)
    assert len(seq2seq.losses) == 2  # one load-balancing loss per sparse layer


def test_encoder_padding_is_ignored(seq2seq):
    inputs = _seq2seq_inputs()
    changed = dict(inputs, encoder_token_ids=inputs["encoder_token_ids"].copy())
    changed["encoder_token_ids"][1, -3:] = [5, 6, 7]
    np.testing.assert_allclose(seq2seq(changed), seq2seq(inputs), atol=1e-5)


def test_seq2seq_decoder_cannot_see_the_future(seq2seq):
    inputs = _seq2seq_inputs()
    changed = dict(inputs, decoder_token_ids=inputs["decoder_token_ids"].copy())
    changed["decoder_token_ids"][:, 3] = (changed["decoder_token_ids"][:, 3] + 1) % VOCAB
    before, after = np.asarray(seq2seq(inputs)), np.asarray(seq2seq(changed))
    np.testing.assert_allclose(after[:, :3], before[:, :3], atol=1e-5)
    assert not np.allclose(after[0, 3:], before[0, 3:])


@pytest.mark.parametrize("preset", ["glam_tiny_8", "switch_lm_tiny_8"])
def test_decoder_lm_cannot_see_the_future(preset):
    lm = SwitchDecoderLM.from_preset(preset, **SMALL)
    inputs = _lm_inputs()
    logits = np.asarray(lm(inputs))
    assert logits.shape == (2, 6, VOCAB)
    for t in range(1, 6):
        changed = dict(inputs, token_ids=inputs["token_ids"].copy())
        changed["token_ids"][:, t] = (changed["token_ids"][:, t] + 1) % VOCAB
        np.testing.assert_allclose(np.asarray(lm(changed))[:, :t], logits[:, :t], atol=1e-5)


@pytest.mark.parametrize("preset", ["glam_tiny_8", "switch_lm_tiny_8"])
@pytest.mark.parametrize("dispatch", ["gather", "einsum"])
def test_decoder_lm_training_is_causal_when_tokens_are_dropped(preset, dispatch):
    """training=True, capacity factor 0.5 (tokens dropped), 4 rows in one routing group:
    changing positions >= t never changes the logits before t (top-1 and top-2)."""
    lm = SwitchDecoderLM.from_preset(
        preset, **dict(SMALL, capacity_factor=0.5), min_capacity=1, dispatch=dispatch
    )
    inputs = {
        "token_ids": np.random.default_rng(3).integers(2, VOCAB, (4, 12)).astype("int32"),
        "padding_mask": np.ones((4, 12), bool),
    }
    logits = np.asarray(lm(inputs, training=True))
    dropped = [
        float(layer.routing_stats["dropped_fraction"])
        for layer in (
            lm.backbone.decoder.blocks[i].feed_forward for i in lm.backbone.decoder.sparse_layers
        )
    ]
    assert max(dropped) > 0.1
    for t in range(1, 12, 2):
        changed = dict(inputs, token_ids=inputs["token_ids"].copy())
        changed["token_ids"][:, t:] = (changed["token_ids"][:, t:] + 7) % VOCAB
        np.testing.assert_allclose(
            np.asarray(lm(changed, training=True))[:, :t], logits[:, :t], atol=1e-5
        )


def test_decoder_lm_refuses_a_non_causal_routing_priority():
    with pytest.raises(ValueError, match="later positions"):
        SwitchDecoderLM.from_preset("glam_tiny_8", priority="position", **SMALL)
    lm = SwitchDecoderLM.from_preset("switch_lm_tiny_8", priority="position", **SMALL)
    assert lm.backbone.decoder.blocks[1].feed_forward.priority == "position"  # causal, top-1


@pytest.mark.parametrize("preset", ["glam_tiny_8", "switch_lm_tiny_8"])
def test_scoring_equals_cached_generation_when_nothing_is_dropped(preset):
    """Inference routes the full sequence in groups of rows and a cached step in a group
    of one token per row; without drops both give the same logits."""
    lm = SwitchDecoderLM.from_preset(preset, **SMALL)
    ids = np.random.default_rng(5).integers(2, VOCAB, (3, 10)).astype("int32")
    scored = np.asarray(lm({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}))
    decoder = lm.backbone.decoder
    sparse = [decoder.blocks[i].feed_forward for i in decoder.sparse_layers]
    assert all(float(layer.routing_stats["dropped_fraction"]) == 0 for layer in sparse)
    backbone = lm.backbone
    cache = np.zeros(
        (3, backbone.num_layers, 2, 10, backbone.num_heads, backbone.key_value_dim), "float32"
    )
    for t in range(10):
        step_logits, _, cache = lm.call_with_cache(ids[:, t : t + 1], cache, t)
        assert all(float(layer.routing_stats["dropped_fraction"]) == 0 for layer in sparse)
        np.testing.assert_allclose(np.asarray(step_logits)[:, 0], scored[:, t], atol=1e-4)


def test_classifier_shapes_and_padding():
    clf = SwitchClassifier.from_preset("switch_tiny_8", num_classes=3, **SMALL)
    inputs = _lm_inputs()
    logits = np.asarray(clf(inputs))
    assert logits.shape == (2, 3)
    changed = dict(inputs, token_ids=inputs["token_ids"].copy())
    changed["token_ids"][1, -2:] = [3, 4]
    np.testing.assert_allclose(np.asarray(clf(changed)), logits, atol=1e-5)
    assert clf.backbone.encoder.sparse_layers == [1] and clf.backbone.decoder is None


def test_mixed_bfloat16_forward():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = SwitchTransformer.from_preset("switch_tiny_8", **SMALL)
    logits = model(_seq2seq_inputs(), training=True)
    assert logits.dtype == "float32" and np.isfinite(np.asarray(logits)).all()
    router = model.backbone.encoder.blocks[1].feed_forward.router
    assert router.compute_dtype == "float32"


@pytest.mark.parametrize("run_eagerly", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_training_steps_reduce_loss(run_eagerly):
    model = SwitchDecoderLM.from_preset("switch_lm_tiny_8", **SMALL)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=run_eagerly,
    )
    x = _lm_inputs(batch=2)
    y = np.roll(x["token_ids"], -1, axis=1)
    first = model.train_on_batch(x, y, return_dict=True)["loss"]
    for _ in range(3):
        last = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert last < first


@pytest.mark.parametrize("routing_metrics", [True, False])
def test_routing_metrics_option_reaches_the_logs(routing_metrics):
    model = SwitchDecoderLM.from_preset(
        "switch_lm_tiny_8", routing_metrics=routing_metrics, **SMALL
    )
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = _lm_inputs(batch=2)
    logs = model.train_on_batch(x, np.roll(x["token_ids"], -1, axis=1), return_dict=True)
    routing_keys = [key for key in logs if key.endswith("/dropped_fraction")]
    # One entry per sparse layer (switch_lm_tiny_8: layers 1 and 3), or none.
    assert len(routing_keys) == (2 if routing_metrics else 0), sorted(logs)
    assert model.backbone.get_config()["routing_metrics"] is routing_metrics
    for index in model.backbone.decoder.sparse_layers:
        layer = model.backbone.decoder.blocks[index].feed_forward
        assert layer.routing_metrics is routing_metrics
        assert float(layer.routing_stats["router_z_loss"]) > 0  # still recorded


# Sparse layer placement ----------------------------------------------------------------


def test_sparse_layers_follow_sparse_step():
    model = SwitchTransformer.from_preset(
        "switch_tiny_8", num_layers=4, num_decoder_layers=3, decoder_sparse_step=1, **SMALL
    )
    assert model.backbone.encoder.sparse_layers == [1, 3]
    assert model.backbone.decoder.sparse_layers == [0, 1, 2]
    kinds = [type(b.feed_forward) for b in model.backbone.encoder.blocks]
    assert kinds == [DenseFeedForward, SwitchFeedForward] * 2
    glam = SwitchDecoderLM.from_preset("glam_tiny_8", sparse_step=2, **SMALL)
    assert glam.backbone.decoder.sparse_layers == [1, 3]
    assert isinstance(glam.backbone.decoder.blocks[3].feed_forward, Top2FeedForward)
    dense = SwitchTransformer.from_preset("switch_tiny_8", num_experts=0, **SMALL).backbone
    assert dense.encoder.sparse_layers == [] and dense.decoder.sparse_layers == []


def test_weight_paths_are_layer_paths_and_metrics_are_named_by_the_stack():
    model = SwitchTransformer.from_preset("switch_tiny_8", **SMALL)
    paths = {w.path for w in model.weights}
    for stack in ("encoder", "decoder"):
        assert {
            f"{stack}/block_0/feed_forward/wi",
            f"{stack}/block_1/feed_forward/router/kernel",
            f"{stack}/block_1/feed_forward/experts/wi",
        } <= paths
    assert not [p for p in paths if "_feed_forward" in p]
    names = {m.name for m in model.metrics}
    assert {"encoder_block_1_feed_forward", "decoder_block_1_feed_forward"} <= names


# Generation -----------------------------------------------------------------------------


def _padded(token_ids, padding_mask, max_length, pad_token_id=0):
    """Right-pads a prompt to `max_length` (mask false: positions to generate)."""
    extra = [(0, 0), (0, max_length - token_ids.shape[1])]
    mask = np.pad(np.asarray(padding_mask, bool), extra)
    return np.where(mask, np.pad(token_ids, extra), pad_token_id).astype("int32"), mask


def _lm_prompt(prompt, max_length):
    ids, mask = _padded(prompt["token_ids"], prompt["padding_mask"], max_length)
    return {"token_ids": ids, "padding_mask": mask}


def _seq2seq_prompt(inputs, max_length, start=0):
    batch = inputs["encoder_token_ids"].shape[0]
    ids, mask = _padded(np.full((batch, 1), start, "int32"), np.ones((batch, 1), bool), max_length)
    return dict(inputs, decoder_token_ids=ids, decoder_padding_mask=mask)


def _greedy_lm_reference(lm, prompt, max_length):
    """Greedy continuation by one full forward pass per new token (no cache)."""
    ids, mask = (
        np.array(x) for x in _padded(prompt["token_ids"], prompt["padding_mask"], max_length)
    )
    start = int(mask.sum(axis=1).min())
    for t in range(start, max_length):
        logits = np.asarray(lm({"token_ids": ids, "padding_mask": mask}))
        ids[:, t] = np.where(mask[:, t], ids[:, t], logits[:, t - 1].argmax(-1))
        mask[:, t] = True
    return ids


def _greedy_seq2seq_reference(model, inputs, max_length):
    decoder_ids = np.zeros((inputs["encoder_token_ids"].shape[0], max_length), "int32")
    for t in range(1, max_length):
        logits = np.asarray(
            model(
                dict(
                    inputs,
                    decoder_token_ids=decoder_ids[:, :t],
                    decoder_padding_mask=np.ones_like(decoder_ids[:, :t]),
                )
            )
        )
        decoder_ids[:, t] = logits[:, -1].argmax(-1)
    return decoder_ids


def test_seq2seq_cached_generation_equals_full_forward_passes(seq2seq):
    inputs = {k: v for k, v in _seq2seq_inputs().items() if k.startswith("encoder")}
    seq2seq.compile(sampler="greedy")
    cached = seq2seq.generate(_seq2seq_prompt(inputs, 8), stop_token_ids=None)
    ids = np.asarray(cached["decoder_token_ids"])
    assert ids.shape == (2, 8) and (ids[:, 0] == 0).all()
    np.testing.assert_array_equal(ids, _greedy_seq2seq_reference(seq2seq, inputs, 8))


def test_decoder_lm_cached_generation_equals_full_forward_passes(glam):
    prompt = _lm_inputs(length=4)
    glam.compile(sampler="greedy")
    cached = glam.generate(_lm_prompt(prompt, 9), stop_token_ids=None)
    ids = np.asarray(cached["token_ids"])
    np.testing.assert_array_equal(ids, _greedy_lm_reference(glam, prompt, 9))
    np.testing.assert_array_equal(ids[0, :4], prompt["token_ids"][0])  # prompt kept
    np.testing.assert_array_equal(ids[1, :2], prompt["token_ids"][1, :2])


def test_generation_stops_and_pads_after_stop_token(glam):
    prompt = _lm_prompt(_lm_inputs(length=4), 9)
    glam.compile(sampler="greedy")
    greedy = np.asarray(glam.generate(prompt, stop_token_ids=None)["token_ids"])
    stop = int(greedy[0, 4])  # make the first generated token of row 0 a stop token
    out = glam.generate(prompt, stop_token_ids=[stop])
    ids, mask = np.asarray(out["token_ids"]), np.asarray(out["padding_mask"])
    assert mask[0].tolist() == [True] * 5 + [False] * 4
    assert (ids[0, 5:] == glam.backbone.pad_token_id).all()


def test_generation_with_a_random_sampler(seq2seq):
    inputs = {k: v for k, v in _seq2seq_inputs().items() if k.startswith("encoder")}
    seq2seq.compile(sampler=keras_hub.samplers.TopKSampler(k=5, seed=1))
    out = seq2seq.generate(_seq2seq_prompt(inputs, 6), stop_token_ids=None)
    ids = np.asarray(out["decoder_token_ids"])
    assert ids.shape == (2, 6) and ((ids >= 0) & (ids < VOCAB)).all()


def test_generate_without_preprocessor_needs_stop_token_ids(glam):
    with pytest.raises(ValueError, match="preprocessor"):
        glam.generate(_lm_prompt(_lm_inputs(length=4), 9))


def test_zoo_names_are_the_keras_hub_tasks():
    assert SwitchTransformer is SwitchSeq2SeqLM
    assert SwitchDecoderLM is SwitchCausalLM
    assert SwitchClassifier is SwitchTextClassifier


# Saving ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["seq2seq", "lm", "classifier"])
def test_keras_round_trip_reproduces_outputs(kind, tmp_path):
    if kind == "seq2seq":
        model = SwitchTransformer.from_preset("switch_tiny_8", tie_embeddings=False, **SMALL)
        inputs = _seq2seq_inputs()
    elif kind == "lm":
        model = SwitchDecoderLM.from_preset("glam_tiny_8", **SMALL)
        inputs = _lm_inputs()
    else:
        model = SwitchClassifier.from_preset("switch_tiny_8", num_classes=4, **SMALL)
        inputs = _lm_inputs()
    expected = np.asarray(model(inputs))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(np.asarray(restored(inputs)), expected)


# Presets and parameter counts ------------------------------------------------------------


def test_list_presets_has_the_contract_names():
    names = models.list_presets()
    for name in [
        "t5_base",
        "switch_base_8",
        "switch_base_16",
        "switch_base_32",
        "switch_base_64",
        "switch_base_128",
        "switch_base_256",
        "switch_large_128",
        "switch_xxl_128",
        "switch_c_2048",
        "switch_tiny_8",
        "dense_tiny",
        "glam_tiny_8",
    ]:
        assert name in names
    assert any(name.startswith("glam_") and "tiny" not in name for name in names)


@pytest.mark.parametrize("cls", [SwitchTransformer, SwitchDecoderLM])
def test_bad_preset_name_lists_valid_names(cls):
    with pytest.raises(ValueError, match="Valid preset names") as info:
        cls.from_preset("switch_base_9")
    for name in models.list_presets():
        assert name in str(info.value)
    with pytest.raises(ValueError, match="Unknown preset"):
        models.count_params("nope")
    with pytest.raises(ValueError, match="Valid preset names"):
        SwitchClassifier.from_preset("nope", num_classes=2)


def test_wrong_kind_and_bad_override_raise():
    with pytest.raises(ValueError, match="causal_lm"):
        SwitchTransformer.from_preset("glam_tiny_8")
    with pytest.raises(ValueError, match="num_expert"):
        SwitchTransformer.from_preset("switch_tiny_8", num_expert=4)


@pytest.mark.parametrize("preset", ["switch_tiny_8", "dense_tiny"])
def test_count_params_matches_seq2seq_and_classifier(preset):
    model = SwitchTransformer.from_preset(preset)
    assert models.count_params(preset) == model.count_params()
    clf = SwitchClassifier.from_preset(preset, 5, tie_embeddings=False)  # positional
    assert (
        models.count_params(preset, task="classifier", num_classes=5, tie_embeddings=False)
        == clf.count_params()
    )


@pytest.mark.parametrize(
    "preset",
    [
        "glam_tiny_8",
        "switch_lm_tiny_8",
        "dense_lm_tiny",
        "dense_lm_small",
        "switch_lm_small_16",
        "glam_lm_small_8",
    ],
)
def test_count_params_matches_decoder_lm(preset):
    assert models.count_params(preset) == SwitchDecoderLM.from_preset(preset).count_params()


# The big presets' structure (untied output, GEGLU, d_kv != d/h, every layer sparse, top-2)
# on shrunk dimensions.
SHRUNK = dict(
    vocabulary_size=50,
    hidden_dim=24,
    num_heads=3,
    key_value_dim=5,
    intermediate_dim=16,
    num_experts=4,
)


@pytest.mark.parametrize(
    "preset", ["switch_xxl_128", "switch_c_2048", "t5_base", "switch_large_128"]
)
def test_count_params_structure_of_big_seq2seq_presets(preset):
    shrunk = dict(SHRUNK, num_layers=3, num_decoder_layers=2)
    model = SwitchTransformer.from_preset(preset, **shrunk)
    assert models.count_params(preset, **shrunk) == model.count_params()


@pytest.mark.parametrize("preset", ["glam_1b_64e", "glam_64b_64e"])
def test_count_params_structure_of_big_lm_presets(preset):
    shrunk = dict(SHRUNK, num_layers=4)
    model = SwitchDecoderLM.from_preset(preset, **shrunk)
    assert models.count_params(preset, **shrunk) == model.count_params()


def test_count_params_matches_switch_paper_table_9():
    assert models.count_params("switch_xxl_128") == pytest.approx(395e9, rel=0.02)
    assert models.count_params("switch_c_2048") == pytest.approx(1571e9, rel=0.02)
    assert models.count_params("t5_base") == 222_903_552  # Hugging Face t5-base
    # Top-1 models use one expert per token: same active size as the dense baseline
    # plus the routers and one expert instead of a dense FFN.
    assert models.count_active_params("switch_base_128") < 1.01 * models.count_params("t5_base")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["t5_base", "switch_base_8"])
def test_count_params_matches_base_models(preset):
    assert models.count_params(preset) == SwitchTransformer.from_preset(preset).count_params()


def test_readme_preset_table_is_current():
    readme = (Path(models.__file__).parent / "README.md").read_text()
    assert models.preset_table() in readme


@pytest.mark.parametrize("layout", ["encoder_only", "encoder_decoder"])
def test_backbone_encode_is_the_encoder_output(layout):
    from tfmoe.models import SwitchBackbone

    separate = layout == "encoder_decoder"  # the encoder's own input embedding is used
    backbone = SwitchBackbone(
        VOCAB, 16, 2, 16, 2, num_experts=2, layout=layout, separate_input_embeddings=separate
    )
    ids = np.random.default_rng(0).integers(1, VOCAB, size=(2, 6)).astype("int32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], "int32")
    if layout == "encoder_only":
        inputs = {"token_ids": ids, "padding_mask": mask}
        expected = backbone(inputs)
    else:
        inputs = {
            "encoder_token_ids": ids,
            "encoder_padding_mask": mask,
            "decoder_token_ids": ids,
            "decoder_padding_mask": mask,
        }
        expected = backbone(inputs)["encoder_sequence_output"]
    np.testing.assert_allclose(backbone.encode(ids, mask), expected, atol=1e-6)


def test_backbone_encode_needs_an_encoder():
    from tfmoe.models import SwitchBackbone

    with pytest.raises(ValueError, match="decoder_only backbone has no encoder"):
        SwitchBackbone(VOCAB, 16, 2, 16, 2, layout="decoder_only").encode([[1]], [[1]])
