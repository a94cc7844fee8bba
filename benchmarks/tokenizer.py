"""Tokenizer speed: steady state, start-up and batch-1 latency, side by side.

    .venv/bin/python benchmarks/tokenizer.py [--batch-size 1024] [--repeats 5] [--json results.json]

Compared in one process, on the Jargon File lines (`tfmoe/data/default_corpus/jargon.txt.gz`)
with the BERT uncased vocabulary (`tests/data/bert_uncased_vocab.txt`):

- tfmoe `WordpieceTokenizer` (exact ids of the reference BERT tokenizer);
- `tf_text.FastBertTokenizer` (`lower_case_nfd_strip_accents=True`: NFKC case
  folding, so not the reference's ids on every text);
- `tf_text.BertTokenizer` (classic WordPiece, `lower_case=True`);
- the reference itself, the `tokenizers` package
  (`tests/data/bert_uncased_tokenizer.json`, Rust, multi-threaded `encode_batch`).

Three figures:

1. steady state: tokens per second through one long-lived `tf.data` iterator
   (`batch`, `map(num_parallel_calls=AUTOTUNE)`), as in a training loop; one
   pass over the lines to warm up, then the mean of `--repeats` passes.
   `tokenizers`: `encode_batch` over the same lines.
2. start-up: milliseconds from building a fresh `tf.data` pipeline (as a
   notebook cell or a short eval job does; `model.fit` makes a new iterator
   every epoch) to its first batch, the first 8 non-empty lines. Median of
   `--startups` pipelines, after one each; every pipeline traces its map
   function again. `tokenizers`: one `encode_batch` of those lines (it has no
   pipeline to build).
3. batch-1 latency: eager call on a `[1]` string tensor holding one sentence
   (`tokenizer(x)` for tfmoe, `.tokenize(x)` for tf_text; `encode` for
   `tokenizers`), median of `--calls`; for a plain ASCII sentence and for one
   with curly quotes. The first eager call of a new tfmoe tokenizer is printed too.

Rounds of 2. and 3. alternate between the tokenizers, so that load from other
processes hits them alike; the load average is printed. Prints to stdout only,
unless `--json`.
"""

import argparse
import gzip
import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# The repository's test data (the reference tokenizer and vocabulary); tfmoe itself is the
# installed package.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from tfmoe.data import corpus  # noqa: E402
from tfmoe.tokenize import WordpieceTokenizer  # noqa: E402

TEST_DATA = REPO_ROOT / "tests" / "data"
DEFAULT_VOCABULARY = TEST_DATA / "bert_uncased_vocab.txt"
DEFAULT_REFERENCE = TEST_DATA / "bert_uncased_tokenizer.json"
STARTUP_LINES = 8
TFMOE = "tfmoe WordpieceTokenizer"
FAST_BERT = "tf_text FastBertTokenizer"
BERT = "tf_text BertTokenizer"
REFERENCE = "tokenizers (reference)"


def _tf_data_passes(tokenize_batch, lines, batch_size):
    """Returns `one_pass()`: tokenizes all `lines` once through a long-lived tf.data iterator.

    The iterator (and with it the instantiated map function: kernels, regexes,
    vocabulary tables) is created once, as in a training loop, so start-up is
    only paid by the first pass.
    """
    dataset = (
        tf.data.Dataset.from_tensor_slices(lines)
        .batch(batch_size)
        .map(tokenize_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .map(lambda ids: tf.size(ids.flat_values, out_type=tf.int64))
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )
    iterator = iter(dataset)
    batches_per_pass = -(-len(lines) // batch_size)
    return lambda: sum(int(next(iterator)) for _ in range(batches_per_pass))


def _steady_state(one_pass, repeats):
    """(tokens per pass, mean seconds per pass after a first one)."""
    tokens = one_pass()
    start = time.perf_counter()
    for _ in range(repeats):
        if one_pass() != tokens:
            raise AssertionError("token count changed between passes")
    return tokens, (time.perf_counter() - start) / repeats


def _fresh_pipeline_ms(tokenize_batch, lines):
    """Milliseconds from a new tf.data pipeline over `lines` to its first batch of ids."""
    start = time.perf_counter()
    dataset = tf.data.Dataset.from_tensor_slices(lines).batch(len(lines)).map(tokenize_batch)
    next(iter(dataset))
    return 1000 * (time.perf_counter() - start)


def _call_ms(function, argument):
    start = time.perf_counter()
    function(argument)
    return 1000 * (time.perf_counter() - start)


def _interleaved_medians(functions, rounds, calls_per_round=1):
    """{name: median ms} over `rounds` rounds; each round calls every function `calls_per_round` times."""
    samples = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            samples[name] += [function() for _ in range(calls_per_round)]
    return {name: statistics.median(values) for name, values in samples.items()}


def _pick_sentence(lines, quotes):
    """The first line of 40-80 characters that is plain ASCII, or (`quotes`) that holds a curly quote."""
    for line in lines:
        text = line.strip()
        if 40 <= len(text) <= 80 and (
            any(q in text for q in "\u201c\u2019") if quotes else text.isascii()
        ):
            return text
    raise ValueError("no suitable sentence")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--corpus",
        type=pathlib.Path,
        default=corpus.JARGON_FILE,
        help="gzipped text, one line each",
    )
    parser.add_argument("--vocabulary", type=pathlib.Path, default=DEFAULT_VOCABULARY)
    parser.add_argument(
        "--reference", type=pathlib.Path, default=DEFAULT_REFERENCE, help="tokenizers JSON"
    )
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="steady-state passes")
    parser.add_argument("--startups", type=int, default=15, help="fresh pipelines per tokenizer")
    parser.add_argument(
        "--calls", type=int, default=500, help="batch-1 calls per tokenizer and sentence"
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    import tokenizers

    with gzip.open(args.corpus, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    startup_lines = [line for line in lines if line.strip()][:STARTUP_LINES]
    sentences = {
        "ASCII": _pick_sentence(lines, quotes=False),
        "curly quotes": _pick_sentence(lines, quotes=True),
    }
    vocab_path = str(args.vocabulary)
    load_before = os.getloadavg()[0]

    start = time.perf_counter()
    tokenizer = WordpieceTokenizer(vocab_path)
    constructor_ms = 1000 * (time.perf_counter() - start)
    first_eager_ms = _call_ms(tokenizer, tf.constant([sentences["ASCII"]]))
    fast_bert = tf_text.FastBertTokenizer(
        tokenizer.get_vocabulary(), token_out_type=tf.int32, lower_case_nfd_strip_accents=True
    )
    bert = tf_text.BertTokenizer(vocab_path, lower_case=True, token_out_type=tf.int32)
    reference = tokenizers.Tokenizer.from_file(str(args.reference))
    reference.no_padding()
    reference.no_truncation()

    @tf.autograph.experimental.do_not_convert
    def fast_bert_batch(text):
        return fast_bert.tokenize(text)

    @tf.autograph.experimental.do_not_convert
    def bert_batch(text):
        return bert.tokenize(text).merge_dims(-2, -1)

    graph_tokenizers = {TFMOE: tokenizer, FAST_BERT: fast_bert_batch, BERT: bert_batch}
    eager_tokenizers = {TFMOE: tokenizer, FAST_BERT: fast_bert.tokenize, BERT: bert.tokenize}

    results = {name: {} for name in [*graph_tokenizers, REFERENCE]}
    # 1. Steady state.
    for name, tokenize_batch in graph_tokenizers.items():
        tokens, seconds = _steady_state(
            _tf_data_passes(tokenize_batch, lines, args.batch_size), args.repeats
        )
        results[name].update(tokens=tokens, seconds_per_pass=seconds)
    tokens, seconds = _steady_state(
        lambda: sum(len(e.ids) for e in reference.encode_batch(lines, add_special_tokens=False)),
        args.repeats,
    )
    results[REFERENCE].update(tokens=tokens, seconds_per_pass=seconds)
    # 2. Start-up of a fresh pipeline (one warm-up pipeline each first).
    startup = {
        name: (lambda t=t: _fresh_pipeline_ms(t, startup_lines))
        for name, t in graph_tokenizers.items()
    }
    startup[REFERENCE] = lambda: _call_ms(
        lambda x: reference.encode_batch(x, add_special_tokens=False), startup_lines
    )
    _interleaved_medians(startup, rounds=1)
    for name, ms in _interleaved_medians(startup, args.startups).items():
        results[name]["startup_ms"] = ms
    # 3. Batch-1 eager latency.
    for label, sentence in sentences.items():
        one = tf.constant([sentence])
        calls = {name: (lambda t=t: _call_ms(t, one)) for name, t in eager_tokenizers.items()}
        calls[REFERENCE] = lambda s=sentence: _call_ms(
            lambda x: reference.encode(x, add_special_tokens=False), s
        )
        _interleaved_medians(calls, rounds=10)
        for name, ms in _interleaved_medians(calls, args.calls // 10, calls_per_round=10).items():
            results[name][f"batch1_ms_{label}"] = ms

    for result in results.values():
        result["tokens_per_second"] = result["tokens"] / result["seconds_per_pass"]
    ours = results[TFMOE]
    print(
        f"Jargon File: {len(lines)} lines, {sum(map(len, lines))} characters; steady state: batch "
        f"{args.batch_size}, mean of {args.repeats} passes after a first one; start-up: median of "
        f"{args.startups} fresh pipelines, {STARTUP_LINES} lines; batch 1: median of {args.calls} calls. "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (before: {load_before:.1f}); "
        f"tensorflow {tf.__version__}, tensorflow-text {tf_text.__version__}, tokenizers {tokenizers.__version__}"
    )
    print(f"batch-1 sentences: {sentences}")
    print(f"tfmoe constructor {constructor_ms:.0f} ms, first eager call {first_eager_ms:.1f} ms")
    header = (
        f"{'method':28s} {'tokens':>8s} {'tokens/s':>11s} {'tfmoe is':>8s} | {'start-up ms':>11s} {'tfmoe /':>7s} | "
        f"{'batch-1 ms':>10s} {'tfmoe /':>7s} | {'quotes ms':>9s} {'tfmoe /':>7s}"
    )
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        result["tfmoe_steady_state_speedup"] = (
            ours["tokens_per_second"] / result["tokens_per_second"]
        )
        result["tfmoe_startup_ratio"] = ours["startup_ms"] / result["startup_ms"]
        result["tfmoe_batch1_ratio"] = ours["batch1_ms_ASCII"] / result["batch1_ms_ASCII"]
        result["tfmoe_batch1_quotes_ratio"] = (
            ours["batch1_ms_curly quotes"] / result["batch1_ms_curly quotes"]
        )
        print(
            f"{name:28s} {result['tokens']:8d} {result['tokens_per_second']:11,.0f} "
            f"{result['tfmoe_steady_state_speedup']:7.2f}x | {result['startup_ms']:11.1f} "
            f"{result['tfmoe_startup_ratio']:6.2f}x | {result['batch1_ms_ASCII']:10.3f} "
            f"{result['tfmoe_batch1_ratio']:6.2f}x | {result['batch1_ms_curly quotes']:9.3f} "
            f"{result['tfmoe_batch1_quotes_ratio']:6.2f}x"
        )
    if ours["tokens"] != results[REFERENCE]["tokens"]:
        print("WARNING: tfmoe and the reference produced different token counts")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "constructor_ms": constructor_ms,
                    "first_eager_call_ms": first_eager_ms,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
