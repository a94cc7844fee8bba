"""SavedModel export of the decoder LM and the encoder-decoder: generation, score, embed."""

import numpy as np
import pytest
import tensorflow as tf
import test_export_helpers as h

import tfmoe

L, N = h.SEQUENCE_LENGTH, h.MAX_NEW_TOKENS


@pytest.fixture(scope="module")
def tok():
    return h.tokenizer()


# XLA is covered by the classifier tests and the slow ones here: without it, the many
# batch shapes below need no recompilation (keeps the fast suite fast on 2 CPU cores).
JIT = False


def _export(kind, tok, tmp_path_factory, jit_compile):
    model_cls, preset = {
        "lm": (tfmoe.models.SwitchDecoderLM, "switch_lm_tiny_8"),
        "seq2seq": (tfmoe.models.SwitchTransformer, "switch_tiny_8"),
    }[kind]
    model = model_cls.from_preset(preset, vocabulary_size=tok.vocabulary_size())
    model.compile(sampler="greedy")  # the Keras side of the parity tests
    path = tfmoe.export.export_saved_model(
        model,
        tok,
        tmp_path_factory.mktemp(kind) / "1",
        sequence_length=L,
        max_new_tokens=N,
        jit_compile=jit_compile,
    )
    return model, path, tf.saved_model.load(path)


@pytest.fixture(scope="module")
def lm(tok, tmp_path_factory):
    return _export("lm", tok, tmp_path_factory, JIT)


@pytest.fixture(scope="module")
def seq2seq(tok, tmp_path_factory):
    return _export("seq2seq", tok, tmp_path_factory, JIT)


def _until_stop(ids, stop):
    return np.where(np.cumsum(ids == stop, axis=1) > 0, 0, ids)


def _right_padded(ids, mask, length):
    """`generate` inputs without a preprocessor: prompts right-padded to `length`."""
    extra = [(0, 0), (0, length - ids.shape[1])]
    return np.pad(np.asarray(ids), extra), np.pad(np.asarray(mask, bool), extra)


def test_lm_signatures_equal_keras(lm, tok):
    model, _, loaded = lm
    assert sorted(loaded.signatures) == ["generate", "score", "serving_default"]
    assert len(loaded.variables) == len(model.variables)
    eos = tok.sep_token_id
    out = loaded.signatures["serving_default"](text=tf.constant(h.TEXTS))
    ids, mask, lengths = h.pack(tok, h.TEXTS, L, prefix=(eos,), keep="last")
    padded_ids, padded_mask = _right_padded(ids, mask, L + N)
    generated = model.generate(
        {"token_ids": padded_ids, "padding_mask": padded_mask}, stop_token_ids=(eos,)
    )["token_ids"]
    expected = np.stack([row[n : n + N] for row, n in zip(generated, lengths)])
    expected = _until_stop(expected, eos)
    np.testing.assert_array_equal(out["generated_token_ids"].numpy(), expected)
    assert out["generated_text"].numpy().tolist() == tok.detokenize(expected).numpy().tolist()
    # Alone, unpadded, through the Keras model's own `generate`.
    alone_ids, alone_mask = _right_padded(
        ids[:1, : lengths[0]], np.ones((1, lengths[0]), bool), int(lengths[0]) + N
    )
    alone = model.generate(
        {"token_ids": alone_ids, "padding_mask": alone_mask}, stop_token_ids=(eos,)
    )["token_ids"][:, lengths[0] :]
    np.testing.assert_array_equal(_until_stop(alone, eos)[0], expected[0])

    scored = loaded.signatures["score"](text=tf.constant(h.TEXTS))
    ids, mask, _ = h.pack(tok, h.TEXTS, L + 1, prefix=(eos,), suffix=(eos,))
    logits = model({"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, training=False)
    np.testing.assert_allclose(
        scored["log_likelihood"].numpy(),
        h.log_likelihood(logits, ids[:, 1:], mask[:, 1:]),
        rtol=1e-5,
    )
    np.testing.assert_array_equal(scored["num_tokens"].numpy(), mask[:, 1:].sum(-1))


def test_seq2seq_signatures_equal_keras(seq2seq, tok):
    model, _, loaded = seq2seq
    assert sorted(loaded.signatures) == ["embed", "generate", "score", "serving_default"]
    eos = tok.sep_token_id
    ids, mask, _ = h.pack(tok, h.TEXTS, L, suffix=(eos,))
    out = loaded.signatures["serving_default"](text=tf.constant(h.TEXTS))
    start = model.backbone.decoder_start_token_id
    rows = ids.shape[0]
    prompt, prompt_mask = _right_padded(np.full((rows, 1), start), np.ones((rows, 1), bool), N + 1)
    generated = model.generate(
        {
            "encoder_token_ids": ids,
            "encoder_padding_mask": mask,
            "decoder_token_ids": prompt,
            "decoder_padding_mask": prompt_mask,
        },
        stop_token_ids=(eos,),
    )["decoder_token_ids"]
    np.testing.assert_array_equal(
        out["generated_token_ids"].numpy(), _until_stop(np.asarray(generated)[:, 1:], eos)
    )

    targets = [b"world", b"", b"x y z", b"a " * 50]
    scored = loaded.signatures["score"](text=tf.constant(h.TEXTS), target=tf.constant(targets))
    t_ids, t_mask, _ = h.pack(tok, targets, N + 1, prefix=(start,), suffix=(eos,))
    logits = model(
        {
            "encoder_token_ids": ids,
            "encoder_padding_mask": mask,
            "decoder_token_ids": t_ids[:, :-1],
            "decoder_padding_mask": t_mask[:, :-1],
        },
        training=False,
    )
    np.testing.assert_allclose(
        scored["log_likelihood"].numpy(),
        h.log_likelihood(logits, t_ids[:, 1:], t_mask[:, 1:]),
        rtol=1e-5,
    )

    backbone = model.backbone
    hidden = backbone.encoder(
        backbone.token_embedding(ids), padding_mask=mask, training=False
    ).numpy()
    weights = mask[:, :, None].astype("float32")
    np.testing.assert_allclose(
        loaded.signatures["embed"](text=tf.constant(h.TEXTS))["embedding"],
        (hidden * weights).sum(1) / weights.sum(1),
        atol=1e-5,
    )


# The seq2seq variants are slow: the fast suite covers the seq2seq export with the parity test.
BOTH = ["lm", pytest.param("seq2seq", marks=pytest.mark.slow)]


@pytest.mark.parametrize("fixture", BOTH)
def test_generation_does_not_depend_on_batch_and_cap_works(fixture, request):
    _, _, loaded = request.getfixturevalue(fixture)
    together = loaded.signatures["serving_default"](text=tf.constant(h.TEXTS))
    for i, text in enumerate(h.TEXTS):
        alone = loaded.signatures["serving_default"](text=tf.constant([text]))
        np.testing.assert_array_equal(
            alone["generated_token_ids"][0], together["generated_token_ids"][i]
        )
    short = loaded.signatures["generate"](text=tf.constant(h.TEXTS), max_new_tokens=tf.constant(2))
    np.testing.assert_array_equal(
        short["generated_token_ids"], together["generated_token_ids"][:, :2]
    )
    capped = loaded.signatures["generate"](
        text=tf.constant(h.TEXTS), max_new_tokens=tf.constant(10 * N)
    )
    assert capped["generated_token_ids"].shape == (len(h.TEXTS), N)


def _check_any_input(loaded, big_batch_signatures):
    for name, fn in loaded.signatures.items():
        big = ([b"word"] * 1000,) if name in big_batch_signatures else ()
        for texts in (h.EDGE_TEXTS, [], *big):
            args = {
                k: (
                    tf.constant(texts, tf.string, shape=[len(texts)])
                    if v.dtype == tf.string
                    else tf.constant(N)
                )
                for k, v in fn.structured_input_signature[1].items()
            }
            for value in fn(**args).values():
                assert value.shape[0] == len(texts)
                if value.dtype.is_floating:
                    assert np.isfinite(value.numpy()).all()


@pytest.mark.parametrize("fixture", BOTH)
def test_any_input_is_answered(fixture, request):
    """Edge strings and an empty batch on every signature (batches of 1,000: the
    classifier tests and `test_any_input_is_answered_slow`)."""
    _check_any_input(request.getfixturevalue(fixture)[2], ())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_any_input_is_answered_slow(kind, tok, tmp_path_factory):
    _check_any_input(
        _export(kind, tok, tmp_path_factory, True)[2], ("serving_default", "score", "embed")
    )


def test_default_max_batch_rows_refuses_larger_requests(lm):
    _, _, loaded = lm
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Request has more than max_batch_rows=1024 strings"
    ):
        loaded.signatures["score"](text=tf.constant([""] * 1025))


def test_seq2seq_score_needs_one_target_per_text(seq2seq):
    _, _, loaded = seq2seq
    with pytest.raises(tf.errors.InvalidArgumentError, match="same number of strings"):
        loaded.signatures["score"](text=tf.constant(["a", "b"]), target=tf.constant(["a"]))


def _check_fresh_process(exports, signatures):
    results = h.load_in_fresh_process(*(path for _, path, _ in exports), signatures=signatures)
    for _, path, loaded in exports:
        for name, fn in loaded.signatures.items():
            if signatures and name not in signatures:
                continue
            got = results[f"{path}:{name}"]
            args = {
                k: tf.constant(["hello world", ""]) if v.dtype == tf.string else tf.constant(2)
                for k, v in fn.structured_input_signature[1].items()
            }
            for key, value in fn(**args).items():
                if value.dtype == tf.string:
                    assert got[key] == [s.decode("utf-8", "replace") for s in value.numpy()]
                else:
                    np.testing.assert_allclose(got[key], value.numpy(), atol=1e-5)


def test_fresh_process_loads_with_tensorflow_text_only(lm):
    _check_fresh_process([lm], ["serving_default", "score"])


@pytest.mark.slow
def test_fresh_process_runs_every_signature_with_xla(tok, tmp_path_factory):
    _check_fresh_process([_export(k, tok, tmp_path_factory, True) for k in ("lm", "seq2seq")], None)


def test_jit_compile_auto_uses_xla_where_it_compiles(lm, tok):
    from tfmoe.export.options import resolve_options

    assert resolve_options(lm[0], tok, "causal_lm").jit_compile is True
