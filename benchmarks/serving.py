"""Serving cost of the exported SavedModel vs the Keras model on pre-tokenized ids.

For each task, one process, runs interleaved side by side, `tf.function` graphs (XLA for the model
part when the export uses it, for both sides):
- `saved_model`: the exported signature on raw strings (tokenization + packing +
  model + post-processing, as TF Serving runs it, minus the RPC);
- `keras`: the same Keras model on ids tokenized and packed beforehand.
Latency p50 / p95 at batch 1 and throughput at batch 64; the tokenizer overhead is
`1 - keras_time / saved_model_time` at batch 64 (goal: <= 10%).
Texts: documents of the bundled Jargon File corpus cut to `--chars` characters.

`--memory` measures instead the time and peak memory of single large requests to the LM
SavedModel: each request of `--requests` (`SIGNATURE:ROWS[:MAX_NEW_TOKENS]`) runs in a
fresh process that loads the model (only TF and TF Text imported), answers 2 rows, then
the request; reported: the growth of the peak RSS (Linux `VmHWM`, reset after loading)
over the RSS of the loaded model.

Usage:
  python benchmarks/serving.py                       # classifier + LM score, ~2 min on 2 cores
  python benchmarks/serving.py --tasks classifier,lm_generate --repeats 20
  python benchmarks/serving.py --memory --max_new_tokens 32 --max_batch_rows 5000
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401

import tfmoe  # noqa: E402
import tfmoe.data.corpus  # noqa: E402
import tfmoe.export  # noqa: E402
from tfmoe.export import options as export_options  # noqa: E402
from tfmoe.export import scoring, text_inputs  # noqa: E402
from tfmoe.export.options import resolve_options  # noqa: E402

TASKS = ("classifier", "lm_score", "lm_generate")
DEFAULT_REQUESTS = "score:500,score:5000,generate:100:0,generate:100:32"

# Runs in a fresh process: argv = SavedModel dir, texts JSON file, signature, rows,
# max_new_tokens. Prints one JSON line.
MEMORY_PROBE = r"""
import ctypes, json, sys, time
import tensorflow as tf
import tensorflow_text  # noqa: F401
path, texts_file, name, rows, new = sys.argv[1:]
with open(texts_file) as f:
    texts = json.load(f)[:int(rows)]
fn = tf.saved_model.load(path).signatures[name]

def call(strings):
    args = {"text": tf.constant(strings, tf.string, shape=[len(strings)])}
    if name == "generate":
        args["max_new_tokens"] = tf.constant(int(new))
    return fn(**args)

def peak_mb():
    # VmHWM, not ru_maxrss: the latter keeps the RSS of the parent that started us.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

call(texts[:2])
ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap pages back to the OS
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak restarts from the current RSS
baseline = peak_mb()
start = time.perf_counter()
try:
    call(texts)
    status = "ok"
except tf.errors.InvalidArgumentError:
    status = "refused (InvalidArgument)"
print(json.dumps({"seconds": time.perf_counter() - start, "baseline_mb": baseline,
                  "growth_mb": peak_mb() - baseline, "status": status}))
"""


def texts(count, chars):
    docs = itertools.cycle(itertools.islice(tfmoe.data.corpus.jargon_documents(), 512))
    return [next(docs)[:chars] for _ in range(count)]


def build(task, tokenizer, options):
    """(model, signature name, keras_fn(packed inputs), pack(strings) -> packed inputs)."""
    vocab = tokenizer.vocabulary_size()
    if task == "classifier":
        model = tfmoe.models.SwitchClassifier.from_preset(
            "switch_tiny_8", num_classes=2, vocabulary_size=vocab
        )
        prefix, suffix, extra = (tokenizer.cls_token_id,), (tokenizer.sep_token_id,), 0
    else:
        model = tfmoe.models.SwitchDecoderLM.from_preset("switch_lm_tiny_8", vocabulary_size=vocab)
        prefix, suffix, extra = (tokenizer.sep_token_id,), (tokenizer.sep_token_id,), 1
    kind = "classifier" if task == "classifier" else "causal_lm"
    jit = resolve_options(model, tokenizer, kind, **options).jit_compile

    def pack(strings):
        ids = text_inputs.token_ids(tokenizer, tf.constant(strings))
        if task == "lm_generate":
            return text_inputs.pack(ids, options["sequence_length"], 0, prefix, keep="last")
        return text_inputs.pack(ids, options["sequence_length"] + extra, 0, prefix, suffix)

    if task == "classifier":
        fn = tf.function(
            lambda ids, mask, _: tf.nn.softmax(
                model({"token_ids": ids, "padding_mask": mask}, training=False)
            ),
            jit_compile=jit,
        )
        return model, "serving_default", fn, pack, jit
    if task == "lm_score":
        # The log-likelihood runs inside the compiled function, as in the export.
        @tf.function(jit_compile=jit)
        def score(ids, mask, _):
            logits = model({"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, training=False)
            return scoring.sequence_log_likelihood(logits, ids[:, 1:], mask[:, 1:])

        return model, "score", score, pack, jit
    eos, new = tokenizer.sep_token_id, options["max_new_tokens"]
    sampler = keras_hub.samplers.GreedySampler()

    # keras-hub's inner generation function on prompts right-padded by `new` positions,
    # with the greedy sampler of the export.
    @tf.function
    def generate(ids, mask, _):
        ids = tf.pad(ids, [[0, 0], [0, new]])
        mask = tf.pad(mask, [[0, 0], [0, new]], constant_values=False)
        return model.generate_step(
            {"token_ids": ids, "padding_mask": mask}, stop_token_ids=(eos,), sampler=sampler
        )

    return model, "serving_default", generate, pack, False


def paired_timings(fns, repeats):
    """Seconds per call of each of `fns`, interleaved run by run (a busy machine slows
    both sides alike); two warm-up calls each (tracing, XLA compilation)."""
    for fn in fns * 2:
        fn()
    out = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, out):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [np.array(times) for times in out]


def export_options_of(args):
    return dict(
        sequence_length=args.sequence_length,
        max_new_tokens=args.max_new_tokens,
        max_batch_rows=args.max_batch_rows,
        chunk_rows=args.chunk_rows,
    )


def run_task(task, tokenizer, args, directory):
    options = export_options_of(args)
    model, signature, keras_fn, pack, jit = build(task, tokenizer, options)
    path = tfmoe.export.export_saved_model(
        model, tokenizer, os.path.join(directory, task), **options
    )
    served = tf.saved_model.load(path).signatures[signature]
    rows = []
    for batch, repeats in ((1, args.repeats * 4), (64, args.repeats)):
        strings = texts(batch, args.chars)
        packed = pack(strings)
        text = tf.constant(strings)
        t_saved, t_keras = paired_timings(
            [
                lambda: served(text=text),
                lambda: tf.nest.map_structure(np.asarray, keras_fn(*packed)),
            ],
            repeats,
        )
        rows.append((batch, t_saved, t_keras))
    return task, jit, rows


def run_memory(tokenizer, args, directory):
    """Markdown table rows: time and peak RSS growth of each request of `--requests`."""
    model = tfmoe.models.SwitchDecoderLM.from_preset(
        "switch_lm_tiny_8", vocabulary_size=tokenizer.vocabulary_size()
    )
    path = tfmoe.export.export_saved_model(
        model, tokenizer, os.path.join(directory, "lm"), **export_options_of(args)
    )
    requests = [request.split(":") for request in args.requests.split(",")]
    texts_file = os.path.join(directory, "texts.json")
    with open(texts_file, "w") as f:
        json.dump(texts(max(int(r[1]) for r in requests), args.chars), f)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    lines = [
        "| signature | rows | max_new_tokens | seconds | peak RSS growth MB | status |",
        "|" + "---|" * 6,
    ]
    for name, rows, *new in requests:
        new = new[0] if new else "-"
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_PROBE,
                path,
                texts_file,
                name,
                rows,
                "0" if new == "-" else new,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:  # e.g. killed for memory
            lines.append(f"| {name} | {rows} | {new} | - | - | exit {done.returncode} |")
        else:
            r = json.loads(done.stdout.strip().splitlines()[-1])
            lines.append(
                f"| {name} | {rows} | {new} | {r['seconds']:.1f} | "
                f"{r['growth_mb']:.0f} | {r['status']} |"
            )
        print(lines[-1], flush=True)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="classifier,lm_score")
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed runs at batch 64 (4x at batch 1)"
    )
    parser.add_argument("--sequence_length", type=int, default=128)
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--chars", type=int, default=600, help="characters per text")
    parser.add_argument("--max_batch_rows", type=int, default=export_options.DEFAULT_MAX_BATCH_ROWS)
    parser.add_argument("--chunk_rows", type=int, default=export_options.DEFAULT_CHUNK_ROWS)
    parser.add_argument(
        "--memory",
        action="store_true",
        help="time and peak RSS of single large requests (see --requests)",
    )
    parser.add_argument(
        "--requests",
        default=DEFAULT_REQUESTS,
        help="--memory requests, SIGNATURE:ROWS[:MAX_NEW_TOKENS],...",
    )
    parser.add_argument(
        "--vocabulary", default=str(tfmoe.data.corpus.DEFAULT_CORPUS_DIR / "vocab.txt")
    )
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"`--tasks` entries must be in {TASKS}, got {task!r}.")
    tokenizer = tfmoe.tokenize.WordpieceTokenizer(args.vocabulary)
    print(
        f"vocabulary {args.vocabulary} ({tokenizer.vocabulary_size()} tokens), "
        f"sequence_length {args.sequence_length}, {args.chars}-char texts, "
        f"{os.cpu_count()} CPUs, TF {tf.__version__}"
    )
    if args.memory:
        with tempfile.TemporaryDirectory() as directory:
            print("\n".join(run_memory(tokenizer, args, directory)))
        return
    header = (
        "| task | XLA | saved_model b1 p50 / p95 ms | keras b1 p50 / p95 ms | "
        "saved_model b64 ex/s | keras b64 ex/s | tokenizer overhead b64 |"
    )
    lines = [header, "|" + "---|" * 7]
    with tempfile.TemporaryDirectory() as directory:
        for task in tasks:
            task, jit, ((_, s1, k1), (_, s64, k64)) = run_task(task, tokenizer, args, directory)
            p = lambda t: f"{1e3 * np.median(t):.1f} / {1e3 * np.percentile(t, 95):.1f}"  # noqa
            overhead = 1 - np.median(k64) / np.median(s64)
            lines.append(
                f"| {task} | {jit} | {p(s1)} | {p(k1)} | {64 / np.median(s64):.0f} | "
                f"{64 / np.median(k64):.0f} | {100 * overhead:.1f}% |"
            )
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
