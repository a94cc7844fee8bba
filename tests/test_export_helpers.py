"""Helpers of the export tests (tiny models, reference packing, fresh-process loader); no tests."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow as tf

VOCAB = pathlib.Path(__file__).resolve().parent / "data" / "bert_uncased_vocab.txt"
SEQUENCE_LENGTH = 16
MAX_NEW_TOKENS = 4
# One of each hard input: empty, whitespace, invalid UTF-8, 100k characters, plain text.
EDGE_TEXTS = [
    b"",
    b"   \t\n ",
    b"\xff\xfe ab\xc3",
    ("long words " * 10_000).encode()[:100_000],
    b"The quick brown fox jumps over the lazy dog.",
]
TEXTS = [
    b"hello world",
    b"a much longer sentence with several words in it , really .",
    b"caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87",
    b"",
]


def tokenizer():
    import tfmoe

    return tfmoe.tokenize.WordpieceTokenizer(str(VOCAB))


def pack(tok, texts, length, prefix=(), suffix=(), keep="first"):
    """Reference packing in NumPy: `(ids [n, length], mask [n, length], lengths [n])`."""
    rows = []
    room = length - len(prefix) - len(suffix)
    for ids in tok(tf.constant(texts)).to_list():
        body = ids[:room] if keep == "first" else ids[max(len(ids) - room, 0) :]
        rows.append(list(prefix) + body + list(suffix))
    lengths = np.array([len(r) for r in rows], np.int32)
    ids = np.array([r + [0] * (length - len(r)) for r in rows], np.int32).reshape(-1, length)
    return ids, np.arange(length)[None, :] < lengths[:, None], lengths


def log_likelihood(logits, labels, mask):
    """Reference `score`: summed log-softmax of `labels` `[n, seq]` where `mask` -> `[n]`."""
    log_probs = tf.nn.log_softmax(logits).numpy()
    picked = np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    return (picked * mask).sum(-1)


LOADER = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops)
results = {}
wanted = sys.argv[1].split(",") if sys.argv[1] else None
for path in sys.argv[2:]:
    loaded = tf.saved_model.load(path)
    for name, fn in loaded.signatures.items():
        if wanted and name not in wanted:
            continue
        spec = fn.structured_input_signature[1]
        args = {k: tf.constant(["hello world", ""]) if v.dtype == tf.string else tf.constant(2)
                for k, v in spec.items()}
        out = fn(**args)
        results[path + ":" + name] = {k: v.numpy().tolist() if v.dtype != tf.string
                                      else [s.decode("utf-8", "replace") for s in v.numpy()]
                                      for k, v in out.items()}
assert "tfmoe" not in sys.modules and "keras_hub" not in sys.modules
print(json.dumps(results))
"""


def load_in_fresh_process(*paths, signatures=None):
    """Loads and calls `signatures` (default all) in a process importing only TF and TF Text."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", LOADER, ",".join(signatures or ()), *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


RSS_PROBE = r"""
import ctypes, json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops)
path, name, text = sys.argv[1], sys.argv[2], sys.argv[3]
fn = tf.saved_model.load(path).signatures[name]

def peak_mb():
    # VmHWM, not ru_maxrss: the latter also keeps the peak from before `exec`, i.e. the
    # RSS of the (large) parent that started this process, and cannot be reset.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

def reset_peak():
    # Free heap pages go back to the OS (glibc), so a request's allocations show in the
    # RSS instead of reusing them; then the peak restarts from the current RSS (Linux >=
    # 4.0). Where either is missing, growth is measured above the earlier peak.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

fn(text=tf.constant([text] * 2))  # warm-up: first call of the signature
growth = {}
for rows in map(int, sys.argv[4:]):
    reset_peak()
    before = peak_mb()
    try:
        fn(text=tf.constant([text] * rows))
        growth[rows] = peak_mb() - before
    except tf.errors.InvalidArgumentError as error:
        growth[rows] = error.message
print(json.dumps(growth))
"""


def peak_rss_growth_in_fresh_process(path, signature, text, row_counts):
    """Peak RSS growth (MiB) of `signature(text=[text] * rows)` for each of `row_counts`.

    A fresh process (importing only TF and TF Text) loads `path`, calls the signature
    once on 2 rows, then, for each request in order, returns free heap pages to the OS
    and resets the peak RSS (glibc `malloc_trim`, Linux `clear_refs`) and reports the
    peak RSS (`VmHWM`) after the request minus before it. Returns
    `{str(rows): MiB, or the InvalidArgument message of a refused request}`.
    """
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(path), signature, text, *map(str, row_counts)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
