"""Sparse-to-dense distillation: `tfmoe.models.Distiller`, `init_student_from_teacher`,
`experiments/distill.py`."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmoe
from tfmoe.models import Distiller, SwitchDecoderLM, SwitchTransformer, init_student_from_teacher

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(REPO, "experiments", "distill.py")
VOCAB = 40
SMALL = dict(
    vocabulary_size=VOCAB,
    hidden_dim=16,
    num_heads=2,
    intermediate_dim=24,
    num_layers=2,
    dropout=0.0,
)


def _pair(**overrides):
    """A sparse teacher (layer 1 has 4 experts) and a dense student, different random weights."""
    keras.utils.set_random_seed(1)
    teacher = SwitchDecoderLM.from_preset(
        "switch_lm_tiny_8", **{**SMALL, "num_experts": 4, **overrides}
    )
    student = SwitchDecoderLM.from_preset("dense_lm_tiny", **{**SMALL, **overrides})
    return teacher, student


def _relative(model):
    """`{key of init_student_from_teacher (backbone/<variable path>): numpy value}`."""
    return {f"backbone/{v.path}": keras.ops.convert_to_numpy(v) for v in model.backbone.weights}


def _batch(seed=0, batch=4, seq=10, pad_rows=(1, 3), pad_from=6):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, (batch, seq)).astype("int32")
    labels = rng.integers(2, VOCAB, (batch, seq)).astype("int32")
    mask = np.ones((batch, seq), "int32")
    for row in pad_rows:
        mask[row, pad_from:] = 0
        ids[row, pad_from:] = 0
        labels[row, pad_from:] = 0
    return {"token_ids": ids, "padding_mask": mask}, labels, mask.astype("float32")


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _numpy_loss(
    student_logits, teacher_logits, labels, weights, hard_w, soft_w, temperature, soft_loss
):
    log_p = _log_softmax(student_logits.astype(np.float64))
    ce = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    log_ps = _log_softmax(student_logits.astype(np.float64) / temperature)
    log_pt = _log_softmax(teacher_logits.astype(np.float64) / temperature)
    pt = np.exp(log_pt)
    per_token = (pt * (log_pt - log_ps)).sum(-1) if soft_loss == "kl" else -(pt * log_ps).sum(-1)
    hard = (ce * weights).sum() / weights.sum()
    soft = temperature**2 * (per_token * weights).sum() / weights.sum()
    return hard_w * hard + soft_w * soft, hard, soft


# init_student_from_teacher ---------------------------------------------------------


def test_init_copies_exactly_the_non_expert_weights():
    teacher, student = _pair()
    before, source = _relative(student), _relative(teacher)
    report = init_student_from_teacher(student, teacher)
    after = _relative(student)
    sparse_ffn = "backbone/decoder/block_1/feed_forward/"
    copied = [k for k in after if not k.startswith(sparse_ffn)]
    assert len(copied) == len(after) - 3  # wi_0, wi_1, wo of the sparse position stay
    for key in copied:
        assert not np.array_equal(before[key], source[key]) or key.endswith("scale"), key
        np.testing.assert_array_equal(after[key], source[key], err_msg=key)
    for key in after:
        if key.startswith(sparse_ffn):
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert sorted(report["copied"]) == sorted(copied)
    assert sorted(report["kept"]) == sorted(k for k in after if k.startswith(sparse_ffn))
    assert sorted(report["teacher_expert_weights"]) == sorted(
        k for k in source if k.startswith(sparse_ffn)
    )
    assert not (report["mismatched"] or report["unmatched_student"] or report["unmatched_teacher"])
    # The copy is a copy: training the student later must not touch the teacher.
    student.backbone.token_embedding.embeddings.assign(np.zeros((VOCAB, 16), "float32"))
    np.testing.assert_array_equal(
        _relative(teacher)["backbone/token_embedding/embeddings"],
        source["backbone/token_embedding/embeddings"],
    )


def test_init_expert_mean_option():
    teacher, student = _pair()
    report = init_student_from_teacher(student, teacher, expert_init="mean")
    experts = teacher.backbone.decoder.blocks[1].feed_forward.experts
    ffn = student.backbone.decoder.blocks[1].feed_forward
    for name in ("wi_0", "wi_1", "wo"):
        mean = keras.ops.convert_to_numpy(getattr(experts, name)).mean(0)
        if name != "wo":  # expert wi_* are stored [E, out, in], dense kernels [in, out]
            mean = mean.T
        np.testing.assert_allclose(keras.ops.convert_to_numpy(getattr(ffn, name)), mean, rtol=1e-6)
    assert len(report["from_experts"]) == 3 and not report["kept"]


def test_init_switch_transformer_encoder_decoder():
    small = dict(SMALL, num_decoder_layers=2)
    keras.utils.set_random_seed(2)
    teacher = SwitchTransformer.from_preset("switch_tiny_8", **{**small, "num_experts": 4})
    student = SwitchTransformer.from_preset("dense_tiny", **small)
    report = init_student_from_teacher(student, teacher)
    after, source = _relative(student), _relative(teacher)
    sparse = ("backbone/encoder/block_1/feed_forward/", "backbone/decoder/block_1/feed_forward/")
    for key in after:
        if not key.startswith(sparse):
            np.testing.assert_array_equal(after[key], source[key], err_msg=key)
    assert any("cross_attention" in k for k in report["copied"])
    assert len(report["kept"]) == 4  # wi, wo (ReLU) at each sparse position
    assert len(report["copied"]) == len(after) - 4


def test_init_lists_weights_that_do_not_match():
    teacher, _ = _pair()
    other = SwitchDecoderLM.from_preset("dense_lm_tiny", **{**SMALL, "vocabulary_size": VOCAB + 5})
    with pytest.raises(
        ValueError,
        match=r"backbone/token_embedding/embeddings: student \(45, 16\) vs teacher \(40, 16\)",
    ):
        init_student_from_teacher(other, teacher)
    deeper = SwitchDecoderLM.from_preset("dense_lm_tiny", **{**SMALL, "num_layers": 3})
    with pytest.raises(
        ValueError, match=r"backbone/decoder/block_2/self_attention/q \(16, 64\): no teacher weight"
    ):
        init_student_from_teacher(deeper, teacher)
    report = init_student_from_teacher(other, teacher, strict=False)
    assert report["mismatched"] == [
        "backbone/token_embedding/embeddings: student (45, 16) vs teacher (40, 16)"
    ]
    assert "backbone/decoder/block_0/self_attention/q" in report["copied"]
    with pytest.raises(ValueError, match="expert_init"):
        init_student_from_teacher(other, teacher, expert_init="random")


# Loss ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hard_w, soft_w, temperature, soft_loss",
    [
        (0.25, 0.75, 1.0, "kl"),
        (0.75, 0.25, 2.0, "kl"),
        (0.5, 1.0, 0.5, "cross_entropy"),
    ],
)
def test_loss_matches_numpy(hard_w, soft_w, temperature, soft_loss):
    teacher, student = _pair()
    distiller = Distiller(
        teacher,
        student,
        hard_label_weight=hard_w,
        soft_label_weight=soft_w,
        temperature=temperature,
        soft_loss=soft_loss,
    )
    x, y, mask = _batch()
    student_logits = keras.ops.convert_to_numpy(student(x, training=False))
    teacher_logits = keras.ops.convert_to_numpy(teacher(x, training=False))
    loss = distiller.compute_loss(x, y, student(x, training=False), training=False)
    expected, hard, soft = _numpy_loss(
        student_logits, teacher_logits, y, mask, hard_w, soft_w, temperature, soft_loss
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(distiller.cross_entropy_tracker.result()), hard, rtol=1e-5)
    np.testing.assert_allclose(
        float(distiller.perplexity_tracker.result()), np.exp(hard), rtol=1e-5
    )
    np.testing.assert_allclose(float(distiller.soft_loss_tracker.result()), soft, rtol=1e-5)


def test_default_weights_and_sample_weight():
    teacher, student = _pair()
    distiller = Distiller(teacher, student)
    assert (distiller.hard_label_weight, distiller.soft_label_weight, distiller.temperature) == (
        0.25,
        0.75,
        1.0,
    )
    x, y, _ = _batch(pad_rows=())
    weights = np.random.default_rng(3).uniform(0.0, 2.0, y.shape).astype("float32")
    loss = distiller.compute_loss(
        x, y, student(x, training=False), sample_weight=weights, training=False
    )
    expected, _, _ = _numpy_loss(
        keras.ops.convert_to_numpy(student(x)),
        keras.ops.convert_to_numpy(teacher(x)),
        y,
        weights,
        0.25,
        0.75,
        1.0,
        "kl",
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_padding_is_ignored_in_both_losses():
    teacher, student = _pair()
    distiller = Distiller(teacher, student)
    x, y, _ = _batch()

    def loss(inputs, labels):
        return float(
            distiller.compute_loss(inputs, labels, student(inputs, training=False), training=False)
        )

    reference = loss(x, y)
    x2 = {k: v.copy() for k, v in x.items()}
    y2 = y.copy()
    padded = x["padding_mask"] == 0
    x2["token_ids"][padded] = 7
    y2[padded] = 5
    assert loss(x2, y2) == pytest.approx(reference, rel=1e-6)
    y3 = y.copy()
    y3[0, 0] = (y3[0, 0] + 1) % VOCAB  # a real label: the loss must notice
    assert loss(x, y3) != pytest.approx(reference, rel=1e-6)
    # Same with the padding given only as sample_weight (an all-ones padding_mask: the
    # functional models take both inputs).
    everything = np.ones_like(x["padding_mask"])
    bare = {"token_ids": x["token_ids"], "padding_mask": everything}
    bare2 = {"token_ids": x2["token_ids"], "padding_mask": everything}
    weights = x["padding_mask"].astype("float32")
    first = distiller.compute_loss(bare, y, student(bare), sample_weight=weights, training=False)
    second = distiller.compute_loss(
        bare2, y2, student(bare2), sample_weight=weights, training=False
    )
    assert float(first) == pytest.approx(float(second), rel=1e-6)


# fit ---------------------------------------------------------------------------------


def _dataset(batches=4, batch=4, seq=10):
    xs, ys, ws = zip(*(_batch(seed=i, batch=batch, seq=seq) for i in range(batches)))
    x = {k: np.concatenate([b[k] for b in xs]) for k in xs[0]}
    return x, np.concatenate(ys), np.concatenate(ws)


def test_fit_trains_the_student_only():
    teacher, student = _pair()
    init_student_from_teacher(student, teacher)
    teacher_before = _relative(teacher)
    student_before = _relative(student)
    distiller = Distiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.AdamW(3e-3, weight_decay=0.1), jit_compile=False)
    assert len(distiller.trainable_weights) == len(student.trainable_weights)
    x, y, w = _dataset()
    history = distiller.fit(
        x, y, sample_weight=w, batch_size=4, epochs=6, shuffle=False, verbose=0
    ).history
    assert history["loss"][-1] < history["loss"][0]
    assert history["cross_entropy"][-1] < history["cross_entropy"][0]
    assert len(set(np.round(history["teacher_cross_entropy"], 5))) == 1  # frozen teacher
    for key, value in _relative(teacher).items():
        np.testing.assert_array_equal(value, teacher_before[key], err_msg=key)
    assert any(not np.array_equal(v, student_before[k]) for k, v in _relative(student).items())
    logs = distiller.evaluate(x, y, sample_weight=w, batch_size=4, verbose=0, return_dict=True)
    assert set(logs) == {
        "loss",
        "cross_entropy",
        "perplexity",
        "soft_loss",
        "teacher_cross_entropy",
    }
    assert logs["perplexity"] == pytest.approx(np.exp(logs["cross_entropy"]), rel=1e-5)
    # The reported cross-entropy is the student's own, over the real tokens.
    logits = keras.ops.convert_to_numpy(student(x, training=False))
    _, hard, _ = _numpy_loss(logits, logits, y, w, 1.0, 0.0, 1.0, "kl")
    assert logs["cross_entropy"] == pytest.approx(hard, rel=1e-4)


def test_one_step_under_mirrored_strategy_matches_one_device(mirrored_cpus):
    x, y, w = _batch(seed=5, pad_rows=())
    data = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(4)
    results = []
    for strategy in (tf.distribute.get_strategy(), mirrored_cpus):
        with strategy.scope():
            teacher, student = _pair()
            distiller = Distiller(teacher, student, temperature=2.0)
            distiller.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
        logs = distiller.fit(data, epochs=1, verbose=0).history
        results.append((logs["loss"][0], _relative(student)))
    (loss_one, one), (loss_two, two) = results
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_keras_round_trip(tmp_path):
    teacher, student = _pair()
    distiller = Distiller(
        teacher,
        student,
        hard_label_weight=0.5,
        soft_label_weight=0.5,
        temperature=2.0,
        soft_loss="cross_entropy",
    )
    config = distiller.get_config()
    clone = Distiller.from_config(json.loads(json.dumps(config)))
    assert {
        k: v for k, v in clone.get_config().items() if k not in ("teacher", "student", "name")
    } == {k: v for k, v in config.items() if k not in ("teacher", "student", "name")}
    assert clone.student.backbone.num_experts == 0 and clone.teacher.backbone.num_experts == 4
    distiller.compile(optimizer="adam", jit_compile=False)
    x, y, _ = _batch()
    distiller.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Distiller)
    assert (loaded.hard_label_weight, loaded.temperature, loaded.soft_loss) == (
        0.5,
        2.0,
        "cross_entropy",
    )
    assert not loaded.teacher.trainable
    assert len(loaded.trainable_weights) == len(loaded.student.trainable_weights)
    assert int(loaded.optimizer.iterations.numpy()) == 1  # compiled, optimizer state restored
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(loaded.teacher(x), teacher(x), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hard_label_weight=-0.1), "hard_label_weight"),
        (dict(soft_label_weight=-1), "soft_label_weight"),
        (dict(soft_label_weight=float("nan")), "soft_label_weight"),
        (dict(hard_label_weight=0, soft_label_weight=0), "both 0"),
        (dict(temperature=0), "temperature"),
        (dict(soft_loss="mse"), "soft_loss"),
    ],
)
def test_bad_arguments(kwargs, message):
    teacher, student = _pair()
    with pytest.raises(ValueError, match=message):
        Distiller(teacher, student, **kwargs)


def test_bad_models():
    teacher, student = _pair()
    other = SwitchDecoderLM.from_preset("dense_lm_tiny", **{**SMALL, "vocabulary_size": VOCAB + 1})
    with pytest.raises(
        ValueError, match=r"`student` has vocabulary_size=41 but `teacher` has vocabulary_size=40"
    ):
        Distiller(teacher, other)
    with pytest.raises(ValueError, match="`teacher` must be a keras.Model"):
        Distiller("teacher", student)
    with pytest.raises(ValueError, match="two different models"):
        Distiller(student, student)
    with pytest.raises(ValueError, match="`loss` must be None"):
        Distiller(teacher, student).compile(optimizer="adam", loss="mse")


def test_exported_from_tfmoe_models():
    assert tfmoe.models.Distiller is Distiller
    assert keras.saving.get_registered_object("tfmoe>Distiller") is Distiller


# experiments/distill.py ----------------------------------------------------------------


def _env():
    return dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1"
    )


def _script(args, timeout):
    return subprocess.run(
        [sys.executable, DISTILL, *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mix=0.5"], "--mix must be HARD:SOFT"),
        (["--dense=switch_lm_tiny_8"], "must be dense"),
        (
            ["--teacher=switch_tiny_8"],
            "is a causal_lm preset but --teacher=switch_tiny_8 a seq2seq one",
        ),
        (["--steps=10", "--steps_per_epoch=4"], "multiple of --steps_per_epoch"),
    ],
)
def test_script_bad_flags_exit_2_with_one_line(tmp_path, args, message):
    result = _script([*args, f"--output_dir={tmp_path}"], timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "distill.py: error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_share_kept_formula(load_script):
    module = load_script("distill")
    assert module.share_kept(6.0, 5.0, 5.7) == pytest.approx(0.3)
    assert module.share_kept(6.0, 5.0, 6.2) == pytest.approx(-0.2)
    assert module.parse_mix("0.25:0.75") == (0.25, 0.75)


@pytest.mark.slow  # 4 short trainings (one XLA compilation each) and a reload: ~2-3 minutes on 2 cores
def test_script_end_to_end_then_reload(tmp_path):
    out = tmp_path / "distill"
    args = [
        "--steps=4",
        "--steps_per_epoch=2",
        "--batch_size=4",
        "--sequence_length=16",
        "--validation_steps=1",
        "--override=num_layers=2",
        "--teacher_override=num_experts=4",
        "--mix=0.25:0.75",
        "--mix=1:0",
        "--strategy=cpu",
        "--verbose=0",
        f"--output_dir={out}",
    ]
    result = _script(args, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (out / "distill.md").read_text()
    assert table in result.stdout
    for label in (
        "dense baseline `dense_lm_tiny`",
        "sparse teacher `switch_lm_tiny_8`",
        "distilled (0.25 hard / 0.75 soft, T=1)",
        "labels only (1 hard)",
    ):
        assert label in table
    report = json.loads((out / "distill.json").read_text())
    rows = report["rows"]
    assert [r["key"] for r in rows] == ["dense", "teacher", "student 0.25:0.75", "student 1:0"]
    assert len({r["val_tokens"] for r in rows}) == 1
    assert all(np.isfinite(r["val_ce"]) for r in rows)
    gain = rows[0]["val_ce"] - rows[1]["val_ce"]
    assert report["teacher_gain"] == pytest.approx(gain)
    if gain >= 0.01:
        assert rows[2]["share"] == pytest.approx((rows[0]["val_ce"] - rows[2]["val_ce"]) / gain)
        assert "Share of the teacher's gain kept" in table
    else:
        assert "The teacher does not beat the dense baseline" in table
    assert report["students"][0]["summary"]["init_report"]["copied"] > 0
    # Second run: everything is loaded from --output_dir, same numbers.
    again = _script(args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished run found") == 4
    assert json.loads((out / "distill.json").read_text())["rows"] == rows
