"""Request limits of the exported signatures: the `max_batch_rows` cap, requests run in
chunks of `chunk_rows` rows (memory bounded by a chunk), `generate` with no new tokens."""

import time

import numpy as np
import pytest
import tensorflow as tf
import test_export_helpers as h

import tfmoe
from tfmoe.export.options import DEFAULT_CHUNK_ROWS

L, N = h.SEQUENCE_LENGTH, h.MAX_NEW_TOKENS
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Letters only: words are spelled out, so a short text fills all `L` positions.
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LETTERS, *("##" + c for c in LETTERS)]
# Model vocabulary beyond the tokenizer's: each row's float32 logits `[L, vocab]` take
# 128 KiB, so `score` memory that grew with the request would show clearly at 5,000 rows
# (about 1.3 GB, unchunked) while a chunk of 64 rows takes about 16 MB.
MODEL_VOCABULARY = 2048
MAX_BATCH_ROWS = 5000
TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tok = tfmoe.tokenize.WordpieceTokenizer(VOCABULARY)
    # One row per routing group (score) so a row's output does not depend on the other
    # rows of its chunk: the chunked SavedModel and the whole-batch Keras model agree.
    model = tfmoe.models.SwitchDecoderLM.from_preset(
        "switch_lm_tiny_8", vocabulary_size=MODEL_VOCABULARY, group_size=L
    )
    # The (tied) embeddings of the ids the tokenizer lacks are scaled up, so greedy
    # generation picks such ids, as a model with a padded vocabulary may.
    embeddings = model.backbone.token_embedding.embeddings
    beyond = np.arange(MODEL_VOCABULARY)[:, None] >= tok.vocabulary_size()
    embeddings.assign(embeddings.numpy() * np.where(beyond, 10.0, 1.0))
    # No XLA: every new chunk size would otherwise add a compilation to the RSS measured.
    path = tfmoe.export.export_saved_model(
        model,
        tok,
        tmp_path_factory.mktemp("limits") / "1",
        sequence_length=L,
        max_new_tokens=N,
        max_batch_rows=MAX_BATCH_ROWS,
        jit_compile=False,
    )
    return model, tok, path, tf.saved_model.load(path)


def test_score_memory_is_bounded_by_a_chunk(exported):
    """Peak RSS growth of the loaded model answering `score` on 5,000 rows stays below
    twice its growth on 500 rows (unbounded, it would be about 10 times)."""
    _, _, path, _ = exported
    growth = h.peak_rss_growth_in_fresh_process(path, "score", TEXT, [500, MAX_BATCH_ROWS])
    noise_floor_mb = 16  # allocator noise: a smaller growth at 500 rows counts as this
    assert growth[str(MAX_BATCH_ROWS)] < 2 * max(growth["500"], noise_floor_mb), growth


def _args(fn, text, max_new_tokens=N):
    """Keyword arguments of signature `fn`: `text` for every string input."""
    return {
        name: text if spec.dtype == tf.string else tf.constant(max_new_tokens)
        for name, spec in fn.structured_input_signature[1].items()
    }


def test_requests_over_max_batch_rows_are_refused(exported):
    _, _, _, loaded = exported
    too_many = tf.constant([""] * (MAX_BATCH_ROWS + 1))
    calls = [(fn, N) for fn in loaded.signatures.values()]
    calls.append((loaded.signatures["generate"], 0))  # refused before the no-token answer
    for fn, max_new_tokens in calls:
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=f"more than max_batch_rows={MAX_BATCH_ROWS} strings",
        ):
            fn(**_args(fn, too_many, max_new_tokens))


def test_chunks_give_the_outputs_of_the_whole_request(exported):
    """A request of a full chunk and a partial one (64 + 8 rows) scores as the Keras
    model on the whole batch and generates as its two chunks sent alone."""
    model, tok, _, loaded = exported
    rows = DEFAULT_CHUNK_ROWS + 8
    texts = [TEXT[: i % len(TEXT)] for i in range(rows)]  # prefixes: every length up to L
    eos = tok.sep_token_id
    scored = loaded.signatures["score"](text=tf.constant(texts))
    ids, mask, _ = h.pack(tok, texts, L + 1, prefix=(eos,), suffix=(eos,))
    logits = model({"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, training=False)
    np.testing.assert_allclose(
        scored["log_likelihood"].numpy(),
        h.log_likelihood(logits, ids[:, 1:], mask[:, 1:]),
        rtol=1e-5,
    )
    np.testing.assert_array_equal(scored["num_tokens"].numpy(), mask[:, 1:].sum(-1))

    generate = loaded.signatures["serving_default"]
    whole = generate(text=tf.constant(texts))
    chunks = [
        generate(text=tf.constant(texts[:DEFAULT_CHUNK_ROWS])),
        generate(text=tf.constant(texts[DEFAULT_CHUNK_ROWS:])),
    ]
    for name, value in whole.items():
        np.testing.assert_array_equal(
            value.numpy(), np.concatenate([c[name].numpy() for c in chunks])
        )


def test_generate_without_new_tokens_returns_at_once(exported):
    _, _, _, loaded = exported
    generate = loaded.signatures["generate"]
    text = tf.constant([TEXT] * DEFAULT_CHUNK_ROWS)

    def timed(count):
        start = time.perf_counter()
        out = generate(text=text, max_new_tokens=tf.constant(count))
        return time.perf_counter() - start, out

    for count in (0, -3):
        out = timed(count)[1]
        assert out["generated_token_ids"].shape == (DEFAULT_CHUNK_ROWS, 0)
        assert out["generated_text"].numpy().tolist() == [b""] * DEFAULT_CHUNK_ROWS
    timed(1)  # first run of the generation branch
    no_tokens = min(timed(0)[0] for _ in range(3))
    one_token = min(timed(1)[0] for _ in range(2))
    # 0 tokens skips the model; running it would cost as much as 1 token (or the 4).
    assert no_tokens < one_token / 5, (no_tokens, one_token)


def test_ids_beyond_the_tokenizer_read_unk(exported):
    """The model vocabulary (2,048) is larger than the tokenizer's (57): generated ids
    the tokenizer lacks read `[UNK]` in the text (the tf-text detokenizer crashes the
    process on such ids)."""
    _, tok, _, loaded = exported
    out = loaded.signatures["serving_default"](
        text=tf.constant([TEXT[:i] for i in range(0, len(TEXT), 3)])
    )
    ids = out["generated_token_ids"].numpy()
    assert (ids >= tok.vocabulary_size()).any(), ids
    readable = np.where(ids < tok.vocabulary_size(), ids, tok.unknown_token_id)
    assert out["generated_text"].numpy().tolist() == tok.detokenize(readable).numpy().tolist()
