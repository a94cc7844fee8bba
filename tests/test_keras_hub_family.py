"""keras-hub family: SwitchTokenizer, SwitchBackbone, and the causal LM, seq2seq LM and
text classifier tasks.

keras-hub's own harness (`keras_hub.src.tests.test_case.TestCase`) checks the backbone
and the task; the other tests check the logits, MoE losses and generation against stored
outputs (`tests/data/switch_reference_outputs.npz`), the MoE losses and metrics under
`fit`, cached generation, and presets on disk.
"""

import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import BERT_VOCAB
from keras_hub.src.tests import test_case

from tfmoe.models import (
    SwitchBackbone,
    SwitchCausalLM,
    SwitchCausalLMPreprocessor,
    SwitchSeq2SeqBackbone,
    SwitchSeq2SeqLM,
    SwitchSeq2SeqLMPreprocessor,
    SwitchTextClassifier,
    SwitchTextClassifierPreprocessor,
    SwitchTokenizer,
    count_params,
)
from tfmoe.private_apis import sublayers
from tfmoe.tokenize import WordpieceTokenizer


class HarnessTestCase(test_case.TestCase):
    """keras-hub's harness, without `tf.test.TestCase.test_session` (a deprecated
    helper that pytest would collect and skip as "Not a test")."""

    test_session = None


VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + "the quick brown fox jumps over lazy dog a cat sat on mat and is".split()
    + ["##s", "##ed", ",", "."]
)
# Tiny sizes; a large eval capacity so that no token is ever dropped (exact parity and
# cache / no-cache comparisons); no dropout.
TINY = dict(
    vocabulary_size=len(VOCAB),
    hidden_dim=16,
    num_heads=2,
    intermediate_dim=32,
    num_layers=2,
    num_experts=4,
    sparse_step=1,
    top_k=2,
    dropout=0.0,
    eval_capacity_factor=64.0,
)


def _lm_inputs(seed=0, batch=2, length=6):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(5, len(VOCAB), (batch, length)).astype("int32"),
        "padding_mask": np.array([[1] * length, [1] * (length - 2) + [0] * 2], "int32")[:batch],
    }


def _seq2seq_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "encoder_token_ids": rng.integers(5, len(VOCAB), (2, 7)).astype("int32"),
        "encoder_padding_mask": np.array([[1] * 7, [1] * 4 + [0] * 3], "int32"),
        "decoder_token_ids": rng.integers(5, len(VOCAB), (2, 5)).astype("int32"),
        "decoder_padding_mask": np.array([[1] * 5, [1] * 4 + [0]], "int32"),
    }


def _causal_lm(sequence_length=8, **overrides):
    preprocessor = SwitchCausalLMPreprocessor(
        SwitchTokenizer(VOCAB), sequence_length=sequence_length
    )
    lm = SwitchCausalLM(SwitchBackbone(**{**TINY, **overrides}), preprocessor=preprocessor)
    lm.compile(sampler="greedy")
    return lm


REFERENCE = os.path.join(os.path.dirname(__file__), "data", "switch_reference_outputs.npz")


def _reference(case):
    """Stored `{"weights": {path: array}, "inputs": {...}, "logits", "losses", ...}` of
    `case` (see tests/data/NOTICE)."""
    with np.load(REFERENCE) as data:
        entries = {
            key[len(case) + 1 :]: data[key] for key in data.files if key.startswith(case + "/")
        }
    reference = {"weights": {}, "inputs": {}}
    for key, value in entries.items():
        group, _, name = key.partition("/")
        if name:
            reference[group][name] = value
        else:
            reference[group] = value
    return reference


def _load_reference(model, reference):
    """Sets every weight of `model` from the stored ones, matched by variable path (the
    backbone's layer paths: `token_embedding/...`, `encoder/...`, `decoder/...`, and the
    classifier's `classifier_head/...`)."""
    weights = reference["weights"]
    paths = [w.path for w in model.weights if "seed_generator" not in w.path]
    assert sorted(paths) == sorted(weights)
    for variable in model.weights:
        if variable.path in weights:
            variable.assign(weights[variable.path])


# keras-hub harness -----------------------------------------------------------------------


class SwitchBackboneHarnessTest(HarnessTestCase):
    # `run_mixed_precision_check=False`: the harness requires every sublayer to compute
    # in the model's policy, but the MoE routers run in float32 by design (selective
    # precision, Switch paper section 2.4); `test_backbone_dtype_policies` below checks
    # everything else that check does.

    def test_decoder_only_backbone(self):
        self.run_backbone_test(
            cls=SwitchBackbone,
            init_kwargs=dict(TINY),
            input_data=_lm_inputs(),
            expected_output_shape=(2, 6, 16),
            run_mixed_precision_check=False,
        )

    def test_encoder_decoder_backbone(self):
        self.run_backbone_test(
            cls=SwitchSeq2SeqBackbone,
            init_kwargs=dict(TINY),
            input_data=_seq2seq_inputs(),
            expected_output_shape={
                "encoder_sequence_output": (2, 7, 16),
                "decoder_sequence_output": (2, 5, 16),
            },
            run_mixed_precision_check=False,
        )


class SwitchCausalLMHarnessTest(HarnessTestCase):
    def test_causal_lm_task(self):
        preprocessor = SwitchCausalLMPreprocessor(SwitchTokenizer(VOCAB), sequence_length=8)
        self.run_task_test(
            cls=SwitchCausalLM,
            init_kwargs={"backbone": SwitchBackbone(**TINY), "preprocessor": preprocessor},
            train_data=(["the quick brown fox jumps", "a cat sat on the mat"],),
            expected_output_shape=(2, 8, len(VOCAB)),
        )

    def test_tokenizer_and_preprocessor_serialization(self):
        tokenizer = SwitchTokenizer(VOCAB)
        self.run_serialization_test(tokenizer)
        self.run_serialization_test(SwitchCausalLMPreprocessor(tokenizer, sequence_length=8))


@pytest.mark.parametrize("policy", ["mixed_float16", "bfloat16"])
def test_backbone_dtype_policies(policy):
    """keras-hub's precision check, except that the routers stay float32."""
    policy = keras.mixed_precision.Policy(policy)
    backbone = SwitchBackbone(**TINY, dtype=policy)
    output = backbone(_lm_inputs())
    assert output.dtype == policy.compute_dtype
    routers = []
    for layer in sublayers(backbone, include_self=True):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if type(layer).__name__ == "Router":
            routers.append(layer)
            assert layer.compute_dtype == "float32"
        else:
            assert (layer.compute_dtype, layer.variable_dtype) == (
                policy.compute_dtype,
                policy.variable_dtype,
            ), layer.name
    assert len(routers) == TINY["num_layers"]


# Tokenizer -------------------------------------------------------------------------------

HARD_TEXT = [
    "Hello, World! Héllo naïve café",
    "The quick brown fox [SEP] jumps [MASK].",
    "日本語 text\twith\ttabs",
    "",
]


def test_tokenizer_ids_are_wordpiece_ids():
    tokenizer = SwitchTokenizer(str(BERT_VOCAB))
    reference = WordpieceTokenizer(str(BERT_VOCAB))
    expected = reference(HARD_TEXT).to_list()
    assert tokenizer(HARD_TEXT) == expected
    assert tokenizer.tokenize(HARD_TEXT) == expected
    assert np.asarray(tokenizer(HARD_TEXT[0])).tolist() == expected[0]
    # In graphs (tf.data), the same ids as a RaggedTensor.
    dataset = tf.data.Dataset.from_tensor_slices(HARD_TEXT).batch(4).map(tokenizer)
    assert dataset.get_single_element().to_list() == expected
    assert tokenizer.detokenize(expected) == [
        t.decode() for t in reference.detokenize(tf.ragged.constant(expected)).numpy()
    ]
    assert tokenizer.detokenize(expected[1]) == "the quick brown fox jumps [MASK] ."


def test_tokenizer_vocabulary_and_special_ids():
    tokenizer = SwitchTokenizer(VOCAB)
    assert tokenizer.vocabulary_size() == len(VOCAB)
    assert tokenizer.get_vocabulary() == VOCAB
    assert tokenizer.id_to_token(6) == "quick" and tokenizer.token_to_id("quick") == 6
    assert (tokenizer.pad_token_id, tokenizer.end_token_id, tokenizer.start_token_id) == (
        0,
        3,
        None,
    )
    assert tokenizer.special_token_ids == [0, 3]
    with pytest.raises(ValueError, match="`id`"):
        tokenizer.id_to_token(len(VOCAB))
    with pytest.raises(ValueError, match="`token`"):
        tokenizer.token_to_id("zebra")
    with pytest.raises(ValueError, match="`end_token`"):
        SwitchTokenizer(VOCAB, end_token="[EOS]")
    empty = SwitchTokenizer()
    with pytest.raises(ValueError, match="no vocabulary"):
        empty.tokenize("the fox")
    empty.set_vocabulary(VOCAB)
    assert empty(["the fox"]) == tokenizer(["the fox"]) == [[5, 8]]


def test_causal_lm_preprocessor_appends_end_token():
    preprocessor = SwitchCausalLMPreprocessor(SwitchTokenizer(VOCAB), sequence_length=6)
    x, y, sample_weight = preprocessor(["the quick fox", "a cat sat on the mat and"])
    ids = [VOCAB.index(t) for t in "the quick fox".split()]
    end = VOCAB.index("[SEP]")
    np.testing.assert_array_equal(x["token_ids"][0], ids + [0, 0, 0])
    np.testing.assert_array_equal(x["padding_mask"][0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(y[0], ids[1:] + [end, 0, 0, 0])
    np.testing.assert_array_equal(sample_weight[0], [1, 1, 1, 0, 0, 0])
    # A truncated row keeps its end token (keras-hub's StartEndPacker).
    assert int(y[1][-1]) == end


def test_causal_lm_preprocessor_matches_causal_lm_dataset():
    from tfmoe.data import causal_lm_dataset

    tokenizer = SwitchTokenizer(str(BERT_VOCAB))
    texts = ["The quick brown fox.", "Héllo, world"]
    preprocessor = SwitchCausalLMPreprocessor(tokenizer, sequence_length=10)
    x, y, sample_weight = preprocessor(texts)
    pipeline = causal_lm_dataset(
        tf.data.Dataset.from_tensor_slices(texts),
        tokenizer,
        sequence_length=10,
        batch_size=2,
        packing=False,
        shuffle_buffer_size=0,
        cache=False,
    )
    features, labels, weights = pipeline.get_single_element()
    np.testing.assert_array_equal(x["token_ids"], features["token_ids"])
    np.testing.assert_array_equal(x["padding_mask"], features["padding_mask"])
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(np.asarray(sample_weight, "float32"), weights)


# Backbone --------------------------------------------------------------------------------


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_decoder_only_logits_and_losses_match_stored_outputs(tie_embeddings):
    lm = SwitchCausalLM(SwitchBackbone(**TINY, tie_embeddings=tie_embeddings))
    reference = _reference(f"decoder_only_tied_{tie_embeddings}")
    _load_reference(lm, reference)
    inputs = reference["inputs"]
    logits = lm(inputs)
    assert logits.dtype == "float32"
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-5)
    # Training mode: the same MoE auxiliary losses, one per sparse layer.
    lm(inputs, training=True)
    assert len(lm.losses) == TINY["num_layers"]
    np.testing.assert_allclose([float(v) for v in lm.losses], reference["losses"], rtol=1e-5)
    assert all(float(v) > 0 for v in lm.losses)


def test_encoder_decoder_logits_match_stored_outputs():
    lm = SwitchSeq2SeqLM(SwitchSeq2SeqBackbone(**TINY, num_decoder_layers=3))
    reference = _reference("encoder_decoder")
    _load_reference(lm, reference)
    np.testing.assert_allclose(lm(reference["inputs"]), reference["logits"], atol=1e-5)
    lm(reference["inputs"], training=True)
    # One loss per sparse layer (encoder and decoder; collected in another layer order).
    np.testing.assert_allclose(
        sorted(float(v) for v in lm.losses), sorted(reference["losses"]), rtol=1e-5
    )


def test_backbone_from_registry_preset_matches_the_counts():
    overrides = dict(
        vocabulary_size=97, hidden_dim=32, num_heads=2, key_value_dim=8, intermediate_dim=32
    )
    causal = SwitchBackbone.from_preset("glam_tiny_8", **overrides)
    assert causal.layout == "decoder_only" and causal.top_k == 2
    assert SwitchCausalLM(causal).count_params() == count_params("glam_tiny_8", **overrides)
    seq2seq = SwitchBackbone.from_preset("switch_tiny_8", **overrides)
    assert type(seq2seq) is SwitchSeq2SeqBackbone and seq2seq.layout == "encoder_decoder"
    assert SwitchSeq2SeqLM(seq2seq).count_params() == count_params("switch_tiny_8", **overrides)


def test_backbone_argument_errors():
    with pytest.raises(ValueError, match="`layout`"):
        SwitchBackbone(**TINY, layout="decoder")
    with pytest.raises(ValueError, match="num_decoder_layers"):
        SwitchBackbone(**TINY, num_decoder_layers=2)
    with pytest.raises(ValueError, match="`hidden_dim`"):
        SwitchBackbone(**dict(TINY, hidden_dim=15))
    with pytest.raises(ValueError, match="`top_k`"):
        SwitchBackbone(**dict(TINY, top_k=0))
    with pytest.raises(ValueError, match="Valid preset names"):
        SwitchBackbone.from_preset("glam_tiny_9")
    with pytest.raises(ValueError, match="Unknown override"):
        SwitchBackbone.from_preset("glam_tiny_8", hidden_size=8)
    with pytest.raises(ValueError, match="layout='decoder_only'"):
        SwitchCausalLM(SwitchBackbone(**TINY, layout="encoder_decoder"))


def test_fit_trains_with_aux_losses_and_logs_routing_metrics():
    lm = _causal_lm()
    lm.preprocessor = None
    inputs = _lm_inputs(batch=2, length=8)
    labels = np.roll(inputs["token_ids"], -1, axis=1)
    lm.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # Zero learning rate: the reported loss is the objective at the current weights.
    total = lm.train_on_batch(inputs, labels, return_dict=True)["loss"]
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        labels, lm(inputs, training=True)
    )
    aux = sum(float(v) for v in lm.losses)
    assert aux > 0
    np.testing.assert_allclose(total, float(cross_entropy) + aux, rtol=1e-5)

    lm.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    router = lm.backbone.decoder.blocks[0].feed_forward.router
    before = router.get_weights()[0].copy()
    history = lm.fit(inputs, labels, epochs=1, verbose=0).history
    assert not np.allclose(before, router.get_weights()[0])
    for i in range(TINY["num_layers"]):
        name = f"decoder_block_{i}_feed_forward"
        assert 1.0 <= history[f"{name}/expert_load_max"][0] <= TINY["num_experts"]
        assert history[f"{name}/dropped_fraction"][0] >= 0.0


# Causal LM generation --------------------------------------------------------------------


def _greedy_full_forward(lm, prompt, max_length):
    """Reference: one full forward pass per new token, no cache, one row at a time."""
    tokens = list(prompt)
    while len(tokens) < max_length:
        ids = np.array([tokens], "int32")
        logits = lm({"token_ids": ids, "padding_mask": np.ones_like(ids)})
        tokens.append(int(np.argmax(logits[0, -1])))
    return tokens


def test_cached_generation_equals_full_forward_greedy():
    lm = _causal_lm()
    lm.preprocessor = None
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]
    max_length = 10
    token_ids = np.zeros((2, max_length), "int32")
    mask = np.zeros((2, max_length), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    output = lm.generate({"token_ids": token_ids, "padding_mask": mask}, stop_token_ids=None)
    for row, prompt in enumerate(prompts):
        assert output["token_ids"][row].tolist() == _greedy_full_forward(lm, prompt, max_length)
    assert output["padding_mask"].all()


def test_generate_text_in_text_out():
    lm = _causal_lm()
    single = lm.generate("the quick", max_length=8)
    batch = lm.generate(["the quick", "a cat sat on"], max_length=8)
    assert isinstance(single, str) and isinstance(batch, list) and len(batch) == 2
    assert batch[0] == single
    assert single.startswith("the quick") and batch[1].startswith("a cat sat on")
    # Same text as greedy decoding of the prompt ids (the end token stops and is dropped).
    prompt = lm.preprocessor.tokenizer(["the quick"])[0]
    expected = _greedy_full_forward(lm, prompt, 8)
    end = lm.preprocessor.tokenizer.end_token_id
    if end in expected[len(prompt) :]:
        expected = expected[: expected.index(end, len(prompt))]
    assert single == lm.preprocessor.tokenizer.detokenize(expected)
    # Token ids still work with a preprocessor attached: padded to max_length, text out.
    from_ids = lm.generate({"token_ids": np.array([prompt], "int32")}, max_length=8)
    assert from_ids == [single]


# Presets ---------------------------------------------------------------------------------


def test_preset_directory_round_trip(tmp_path):
    lm = _causal_lm()
    preset = str(tmp_path / "tiny_lm")
    lm.save_to_preset(preset)
    assert {
        "config.json",
        "model.weights.h5",
        "metadata.json",
        "task.json",
        "preprocessor.json",
        "tokenizer.json",
    } <= set(os.listdir(preset))
    with open(os.path.join(preset, "assets", "tokenizer", "vocabulary.txt")) as file:
        assert file.read().splitlines() == VOCAB

    prompts = ["the quick", "a cat sat on"]
    expected_text = lm.generate(prompts, max_length=8)
    for loaded in (
        SwitchCausalLM.from_preset(preset),
        keras_hub.models.CausalLM.from_preset(preset),
    ):
        assert type(loaded) is SwitchCausalLM
        assert isinstance(loaded.preprocessor, SwitchCausalLMPreprocessor)
        for a, b in zip(lm.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
        loaded.compile(sampler="greedy")
        assert loaded.generate(prompts, max_length=8) == expected_text

    backbone = keras_hub.models.Backbone.from_preset(preset)
    assert type(backbone) is SwitchBackbone and backbone.get_config() == lm.backbone.get_config()
    random_backbone = SwitchBackbone.from_preset(preset, load_weights=False)
    assert not np.array_equal(
        random_backbone.token_embedding.get_weights()[0],
        lm.backbone.token_embedding.get_weights()[0],
    )
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    assert type(tokenizer) is SwitchTokenizer and tokenizer.get_vocabulary() == VOCAB

    backbone_only = str(tmp_path / "backbone_only")
    lm.backbone.save_to_preset(backbone_only)
    lm.preprocessor.tokenizer.save_to_preset(backbone_only)
    rebuilt = SwitchCausalLM.from_preset(backbone_only)
    assert isinstance(rebuilt.preprocessor, SwitchCausalLMPreprocessor)
    np.testing.assert_array_equal(rebuilt(_lm_inputs()), lm(_lm_inputs()))


def test_causal_lm_from_registry_preset():
    overrides = dict(hidden_dim=16, num_heads=2, key_value_dim=8, intermediate_dim=16, num_layers=2)
    lm = SwitchCausalLM.from_preset("glam_tiny_8", vocabulary=VOCAB, sequence_length=6, **overrides)
    assert lm.backbone.vocabulary_size == len(VOCAB)
    assert lm.backbone.num_experts == 8 and lm.preprocessor.sequence_length == 6
    assert lm.predict(["the fox"], verbose=0).shape == (1, 6, len(VOCAB))
    bare = SwitchCausalLM.from_preset("dense_lm_tiny", **overrides)
    assert bare.preprocessor is None and bare.backbone.vocabulary_size == 8192
    with pytest.raises(ValueError, match="causal_lm"):
        SwitchCausalLM.from_preset("switch_tiny_8")
    with pytest.raises(ValueError, match="`sequence_length` needs `vocabulary`"):
        SwitchCausalLM.from_preset("glam_tiny_8", sequence_length=6)
    with pytest.raises(ValueError, match="`preprocessor` or `vocabulary`, not both"):
        SwitchCausalLM.from_preset("glam_tiny_8", vocabulary=VOCAB, preprocessor=lm.preprocessor)


# Text classifier -------------------------------------------------------------------------


def _classifier(**kwargs):
    preprocessor = SwitchTextClassifierPreprocessor(SwitchTokenizer(VOCAB), sequence_length=8)
    return SwitchTextClassifier(
        SwitchBackbone(**TINY, layout="encoder_only"), preprocessor=preprocessor, **kwargs
    )


class SwitchTextClassifierHarnessTest(HarnessTestCase):
    def test_encoder_only_backbone(self):
        self.run_backbone_test(
            cls=SwitchBackbone,
            init_kwargs=dict(TINY, layout="encoder_only"),
            input_data=_lm_inputs(),
            expected_output_shape=(2, 6, 16),
            run_mixed_precision_check=False,
        )

    def test_text_classifier_task(self):
        preprocessor = SwitchTextClassifierPreprocessor(SwitchTokenizer(VOCAB), sequence_length=8)
        self.run_task_test(
            cls=SwitchTextClassifier,
            init_kwargs={
                "backbone": SwitchBackbone(**TINY, layout="encoder_only"),
                "num_classes": 3,
                "preprocessor": preprocessor,
            },
            train_data=(["the quick brown fox jumps", "a cat sat on the mat"], [0, 2]),
            expected_output_shape=(2, 3),
        )


def test_text_classifier_preprocessor_matches_classification_pipeline():
    from tfmoe.data import classification_dataset

    tokenizer = SwitchTokenizer(str(BERT_VOCAB))
    texts = ["The quick brown fox.", "a much longer sentence that will be truncated here"]
    preprocessor = SwitchTextClassifierPreprocessor(tokenizer, sequence_length=8)
    x, y = preprocessor(texts, [1, 0])
    pipeline = classification_dataset(
        tf.data.Dataset.from_tensor_slices((texts, [1, 0])),
        tokenizer,
        sequence_length=8,
        batch_size=2,
        shuffle_buffer_size=0,
        cache=False,
    )
    features, labels = pipeline.get_single_element()
    np.testing.assert_array_equal(x["token_ids"], features["token_ids"])
    np.testing.assert_array_equal(x["padding_mask"], features["padding_mask"])
    assert int(x["token_ids"][0][0]) == tokenizer.cls_token_id
    assert int(x["token_ids"][1][-1]) == tokenizer.sep_token_id


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_text_classifier_logits_match_stored_outputs(pooling):
    classifier = SwitchTextClassifier(
        SwitchBackbone(**TINY, layout="encoder_only"), num_classes=3, pooling=pooling
    )
    reference = _reference(f"classifier_{pooling}")
    _load_reference(classifier, reference)
    logits = classifier(reference["inputs"])
    assert logits.dtype == "float32" and logits.shape == (2, 3)
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-5)


def test_text_classifier_preset_keeps_label_names(tmp_path):
    classifier = _classifier(label_names=["noun", "verb", "adj"])
    assert classifier.num_classes == 3
    preset = str(tmp_path / "classifier")
    classifier.save_to_preset(preset)
    texts = ["the quick brown fox", "a cat sat"]
    for loaded in (
        SwitchTextClassifier.from_preset(preset),
        keras_hub.models.TextClassifier.from_preset(preset),
    ):
        assert type(loaded) is SwitchTextClassifier
        assert loaded.label_names == ["noun", "verb", "adj"]
        np.testing.assert_allclose(
            loaded.predict(texts, verbose=0), classifier.predict(texts, verbose=0), atol=1e-6
        )
    # A new `num_classes` starts a new head on the saved backbone (keras-hub rule).
    fresh = SwitchTextClassifier.from_preset(preset, num_classes=5)
    assert fresh.num_classes == 5 and fresh.label_names is None
    with pytest.raises(ValueError, match="label_names"):
        _classifier(num_classes=2, label_names=["a", "b", "c"])


def test_text_classifier_from_registry_preset():
    overrides = dict(hidden_dim=16, num_heads=2, key_value_dim=8, intermediate_dim=16, num_layers=2)
    classifier = SwitchTextClassifier.from_preset(
        "switch_tiny_8", label_names=["a", "b"], vocabulary=VOCAB, sequence_length=6, **overrides
    )
    assert classifier.num_classes == 2 and classifier.backbone.layout == "encoder_only"
    assert classifier.backbone.vocabulary_size == len(VOCAB)
    assert classifier.predict(["the fox"], verbose=0).shape == (1, 2)
    with pytest.raises(ValueError, match="`num_classes`"):
        SwitchTextClassifier.from_preset("switch_tiny_8", **overrides)
    with pytest.raises(ValueError, match="seq2seq"):
        SwitchTextClassifier.from_preset("glam_tiny_8", num_classes=2)


# Seq2seq LM ------------------------------------------------------------------------------

# One encoder and one decoder layer (both sparse): the harness test stays well under 30 s.
SEQ2SEQ_TINY = dict(TINY, num_layers=1)


def _seq2seq_lm(**overrides):
    preprocessor = SwitchSeq2SeqLMPreprocessor(
        SwitchTokenizer(VOCAB), encoder_sequence_length=8, decoder_sequence_length=6
    )
    lm = SwitchSeq2SeqLM(
        SwitchSeq2SeqBackbone(**{**SEQ2SEQ_TINY, **overrides}), preprocessor=preprocessor
    )
    lm.compile(sampler="greedy")
    return lm


class SwitchSeq2SeqLMHarnessTest(HarnessTestCase):
    def test_seq2seq_lm_task(self):
        preprocessor = SwitchSeq2SeqLMPreprocessor(
            SwitchTokenizer(VOCAB), encoder_sequence_length=8, decoder_sequence_length=6
        )
        self.run_task_test(
            cls=SwitchSeq2SeqLM,
            init_kwargs={
                "backbone": SwitchSeq2SeqBackbone(**SEQ2SEQ_TINY),
                "preprocessor": preprocessor,
            },
            train_data=(
                {
                    "encoder_text": ["the quick brown fox", "a cat sat on the mat"],
                    "decoder_text": ["jumps over", "and the dog"],
                },
            ),
            expected_output_shape=(2, 6, len(VOCAB)),
        )


def test_seq2seq_preprocessor_layout():
    preprocessor = SwitchSeq2SeqLMPreprocessor(
        SwitchTokenizer(VOCAB), encoder_sequence_length=5, decoder_sequence_length=5
    )
    x, y, sample_weight = preprocessor(
        {"encoder_text": ["the quick fox"], "decoder_text": ["a cat"]}
    )
    ids = {t: VOCAB.index(t) for t in VOCAB}
    end = ids["[SEP]"]
    np.testing.assert_array_equal(
        x["encoder_token_ids"][0], [ids["the"], ids["quick"], ids["fox"], end, 0]
    )
    np.testing.assert_array_equal(x["decoder_token_ids"][0], [0, ids["a"], ids["cat"], end, 0])
    np.testing.assert_array_equal(y[0], [ids["a"], ids["cat"], end, 0, 0])
    np.testing.assert_array_equal(sample_weight[0], [1, 1, 1, 0, 0])


def test_seq2seq_lm_matches_stored_outputs_and_generation():
    lm = _seq2seq_lm()
    reference = _reference("seq2seq_generation")
    _load_reference(lm, reference)
    inputs = reference["inputs"]
    np.testing.assert_allclose(lm(inputs), reference["logits"], atol=1e-5)

    # Cached greedy generation == the stored one, and == one full decoder pass per new
    # token.
    max_length = 6
    source = {k: inputs[k] for k in ("encoder_token_ids", "encoder_padding_mask")}
    prompt = np.zeros((2, max_length), "int32")
    prompt_mask = np.zeros((2, max_length), bool)
    prompt_mask[:, 0] = True
    lm.preprocessor = None
    output = lm.generate(
        {**source, "decoder_token_ids": prompt, "decoder_padding_mask": prompt_mask},
        stop_token_ids=None,
    )
    np.testing.assert_array_equal(output["decoder_token_ids"], reference["generated"])
    for row in range(2):
        tokens = [0]
        row_source = {k: v[row : row + 1] for k, v in source.items()}
        while len(tokens) < max_length:
            ids = np.array([tokens], "int32")
            logits = lm(
                {**row_source, "decoder_token_ids": ids, "decoder_padding_mask": np.ones_like(ids)}
            )
            tokens.append(int(np.argmax(logits[0, -1])))
        assert output["decoder_token_ids"][row].tolist() == tokens


def test_seq2seq_generate_text_and_preset_round_trip(tmp_path):
    lm = _seq2seq_lm()
    single = lm.generate("the quick brown fox", max_length=6)
    batch = lm.generate(["the quick brown fox", "a cat sat"], max_length=6)
    assert isinstance(single, str) and batch[0] == single and len(batch) == 2

    preset = str(tmp_path / "seq2seq")
    lm.save_to_preset(preset)
    for loaded in (
        SwitchSeq2SeqLM.from_preset(preset),
        keras_hub.models.Seq2SeqLM.from_preset(preset),
        keras_hub.models.CausalLM.from_preset(preset),
    ):
        assert type(loaded) is SwitchSeq2SeqLM
        for a, b in zip(lm.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
        loaded.compile(sampler="greedy")
        assert loaded.generate(["the quick brown fox", "a cat sat"], max_length=6) == batch
    assert type(keras_hub.models.Backbone.from_preset(preset)) is SwitchSeq2SeqBackbone
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    assert isinstance(tokenizer, SwitchTokenizer) and tokenizer.get_vocabulary() == VOCAB


def test_seq2seq_lm_from_registry_preset_and_errors():
    overrides = dict(
        hidden_dim=16,
        num_heads=2,
        key_value_dim=8,
        intermediate_dim=16,
        num_layers=2,
        num_decoder_layers=1,
    )
    lm = SwitchSeq2SeqLM.from_preset(
        "switch_tiny_8", vocabulary=VOCAB, decoder_sequence_length=4, **overrides
    )
    assert lm.backbone.num_decoder_layers == 1 and lm.backbone.num_experts == 8
    assert lm.backbone.vocabulary_size == len(VOCAB)
    with pytest.raises(ValueError, match="seq2seq"):
        SwitchSeq2SeqLM.from_preset("glam_tiny_8")
    with pytest.raises(
        ValueError,
        match="`decoder_sequence_length` and `encoder_sequence_length` need `vocabulary`",
    ):
        SwitchSeq2SeqLM.from_preset(
            "switch_tiny_8", encoder_sequence_length=4, decoder_sequence_length=4
        )
    with pytest.raises(ValueError, match="SwitchSeq2SeqBackbone"):
        SwitchSeq2SeqLM(SwitchBackbone(**TINY, layout="encoder_decoder"))
    with pytest.raises(ValueError, match="`layout`"):
        SwitchSeq2SeqBackbone(**TINY, layout="decoder_only")
