"""Tokenization speed on the Jargon File lines: tokens per second, and ratios.

    .venv/bin/python benchmarks/tokenize.py [--batch-size 1024] [--repeats 5] [--json results.json]

Compared, in one process, on the same lines with the BERT uncased vocabulary:

- tfmoe `WordpieceTokenizer` in `tf.data` (`batch`, `map(num_parallel_calls=AUTOTUNE)`);
- the reference `tokenizers` package, `Tokenizer.encode_batch` (Rust, multi-threaded);
- `tf_text.BertTokenizer` (classic WordPiece) in the same `tf.data` pipeline;
- for information, end-to-end `tf_text.FastWordpieceTokenizer` alone (no BERT
  normalisation, so not the same ids) in the same pipeline.

Each method makes one pass over the lines to warm up (tracing, kernel creation,
regex compilation: the "1st pass" column), then `--repeats` more through the same
tf.data iterator; tokens/s is over those. The machine's load average is printed
because other processes skew the ratios. Prints to stdout only, unless `--json`.
"""

import sys  # noqa: I001 (must come first)

# This file shares its name with the standard library's `tokenize`: run as a
# script, its folder would come first on sys.path and shadow that module.
if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    del sys.path[0]

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from tfmoe.tokenize import WordpieceTokenizer  # noqa: E402

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


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


def _measure(one_pass, repeats):
    """(tokens per pass, seconds of the first pass, mean seconds per pass afterwards)."""
    start = time.perf_counter()
    tokens = one_pass()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        if one_pass() != tokens:
            raise AssertionError("token count changed between passes")
    return tokens, first, (time.perf_counter() - start) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=pathlib.Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=pathlib.Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    import tokenizers

    with gzip.open(args.data_dir / "jargon.txt.gz", "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    vocab_path = str(args.data_dir / "bert_uncased_vocab.txt")

    tokenizer = WordpieceTokenizer(vocab_path)
    bert = tf_text.BertTokenizer(vocab_path, lower_case=True, token_out_type=tf.int32)
    fast_wordpiece = tf_text.FastWordpieceTokenizer(tokenizer.get_vocabulary(), token_out_type=tf.int32)
    reference = tokenizers.Tokenizer.from_file(str(args.data_dir / "bert_uncased_tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()

    def reference_run():
        return sum(len(e.ids) for e in reference.encode_batch(lines, add_special_tokens=False))

    methods = {
        "tfmoe WordpieceTokenizer, tf.data": _tf_data_passes(tokenizer, lines, args.batch_size),
        "tokenizers (HF) encode_batch": reference_run,
        "tf_text.BertTokenizer, tf.data": _tf_data_passes(
            lambda text: bert.tokenize(text).merge_dims(-2, -1), lines, args.batch_size
        ),
        "(info) FastWordpiece alone, tf.data": _tf_data_passes(fast_wordpiece.tokenize, lines, args.batch_size),
    }
    load_before = os.getloadavg()[0]
    results = {}
    for name, one_pass in methods.items():
        tokens, first, seconds = _measure(one_pass, args.repeats)
        results[name] = {
            "tokens": tokens,
            "first_pass_seconds": first,
            "seconds_per_pass": seconds,
            "tokens_per_second": tokens / seconds,
        }

    ours = results["tfmoe WordpieceTokenizer, tf.data"]["tokens_per_second"]
    print(
        f"Jargon File: {len(lines)} lines, {sum(map(len, lines))} characters; batch {args.batch_size}, "
        f"mean of {args.repeats} passes after a first one; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (before: {load_before:.1f}); "
        f"tensorflow {tf.__version__}, tensorflow-text {tf_text.__version__}, tokenizers {tokenizers.__version__}"
    )
    header = f"{'method':40s} {'tokens':>8s} {'1st pass s':>10s} {'s/pass':>7s} {'tokens/s':>11s} {'tfmoe is':>9s}"
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        ratio = ours / result["tokens_per_second"]
        result["tfmoe_speedup"] = ratio
        print(
            f"{name:40s} {result['tokens']:8d} {result['first_pass_seconds']:10.3f} {result['seconds_per_pass']:7.3f} "
            f"{result['tokens_per_second']:11,.0f} {ratio:8.2f}x"
        )
    if results["tfmoe WordpieceTokenizer, tf.data"]["tokens"] != results["tokenizers (HF) encode_batch"]["tokens"]:
        print("WARNING: tfmoe and the reference produced different token counts")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
