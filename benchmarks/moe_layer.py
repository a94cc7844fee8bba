"""MoE layer speed and memory, as ratios measured side by side in one process.

Forward + backward step (gradients w.r.t. the weights and the input), best of
`--repeats` interleaved round-robin across the layers compared, hidden 512, intermediate 2048, float32, `tf.function` graphs.

1. Scaling in experts at a fixed 256 tokens per expert (input `[E, 256, 512]`, capacity
   factor 1.0): SwitchFeedForward and Top2FeedForward vs a dense FFN (a pair of bias-free
   `keras.layers.Dense`) on the same input.
2. Anchors on `[16, 256, 512]`: keras-hub's `MixtralSparseMoeBlock` (runs every expert on
   every token) with the same sizes, vs our layers.
3. Peak memory of one step (peak RSS growth during the step, measured in a fresh
   subprocess per layer so the allocations do not mix), relative to the dense FFN.

Usage:
  python benchmarks/moe_layer.py                     # full run (several minutes on 2 cores)
  python benchmarks/moe_layer.py --experts 8 --repeats 3 --skip_memory   # quick look
  python benchmarks/moe_layer.py --gradient_ablation --experts 8 32   # experts: our grads vs autodiff
"""

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize` module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmoe  # noqa: E402

HIDDEN, INTERMEDIATE, TOKENS_PER_EXPERT = 512, 2048, 256


def make_layer(kind, num_experts, dispatch="gather"):
    if kind == "dense":
        return keras.Sequential([
            keras.layers.Dense(INTERMEDIATE, activation="relu", use_bias=False),
            keras.layers.Dense(HIDDEN, use_bias=False)])
    if kind == "switch":
        return tfmoe.layers.SwitchFeedForward(
            num_experts, INTERMEDIATE, capacity_factor=1.0, dispatch=dispatch)
    if kind == "top2":
        return tfmoe.layers.Top2FeedForward(
            num_experts, INTERMEDIATE, capacity_factor=1.0, dispatch=dispatch)
    if kind in ("experts", "experts_autodiff"):
        # The experts alone on [E, tokens, hidden] buffers: tfmoe's hand-written matmul
        # gradients against TensorFlow's autodiff ones (the same weights and math).
        experts = tfmoe.layers.ExpertFeedForward(num_experts, INTERMEDIATE)
        return experts if kind == "experts" else _AutodiffExperts(experts)
    if kind == "mixtral":
        from keras_hub.src.models.mixtral.mixtral_decoder import MixtralSparseMoeBlock
        return MixtralSparseMoeBlock(HIDDEN, INTERMEDIATE, num_experts, top_k=2)
    raise ValueError(f"unknown layer kind {kind!r}")


class _AutodiffExperts(keras.layers.Layer):
    """`ExpertFeedForward`'s computation with plain `tf.matmul` (autodiff gradients)."""

    def __init__(self, experts):
        super().__init__(name="autodiff_experts")  # the class name is no valid TF scope
        self.experts = experts

    def call(self, x, training=None):
        if not self.experts.built:
            self.experts.build(x.shape)
        hidden = tf.nn.relu(tf.matmul(x, self.experts.wi))
        return tf.matmul(hidden, self.experts.wo)


def make_step(layer, x, jit_compile=False, build_by_call=True):
    if build_by_call:
        layer(x, training=True)

    @tf.function(jit_compile=jit_compile)
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=True)
            if isinstance(outputs, (tuple, list)):  # keras-hub's block returns (out, logits)
                outputs = outputs[0]
            loss = tf.reduce_mean(tf.square(outputs)) + tf.add_n(
                [tf.zeros([])] + list(layer.losses))
        grads = tape.gradient(loss, [inputs] + layer.trainable_variables)
        return loss, grads

    return step


def time_steps(layers, x, repeats, jit_compile=False):
    """Best step time of each layer; repeats interleaved round-robin so that a busy
    stretch of the machine hits every layer alike."""
    steps = {}
    for kind, layer in layers.items():
        steps[kind] = make_step(layer, x, jit_compile and kind != "mixtral")
        for _ in range(2):
            steps[kind](x)
    best = dict.fromkeys(steps, float("inf"))
    for round_index in range(repeats):
        for kind, step in steps.items():
            if kind == "mixtral" and round_index >= 2:
                continue  # every expert on every token: slow, two repeats are enough
            start = time.perf_counter()
            loss, grads = step(x)
            _ = [g.numpy() for g in grads[:1]] + [loss.numpy()]
            best[kind] = min(best[kind], time.perf_counter() - start)
    return best


def peak_memory_mb(kind, num_experts, shape):
    """Peak RSS growth (MB) of one step of `kind`, in a fresh subprocess."""
    out = subprocess.run(
        [sys.executable, __file__, "--_memory_child", json.dumps([kind, num_experts, shape])],
        capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _memory_child(spec):
    kind, num_experts, shape = json.loads(spec)
    x = tf.random.normal(shape)
    layer = make_layer(kind, num_experts)
    layer.build(tuple(shape))  # weights only: no forward pass before the baseline
    step = make_step(layer, x, build_by_call=False)
    step.get_concrete_function(x)  # trace (no execution) before the baseline
    before_kb = _current_rss_kb()  # what is resident now, not the peak so far
    step(x)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(max(0, peak_kb - before_kb) / 1024.0)


def _current_rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experts", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--anchor_experts", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--gradient_ablation", action="store_true",
                        help="only time the experts with tfmoe's matmul gradients vs autodiff")
    parser.add_argument("--skip_timing", action="store_true")
    parser.add_argument("--dispatch", default="gather", choices=["gather", "einsum"])
    parser.add_argument("--jit_compile", action="store_true",
                        help="compile every step (dense included) with XLA")
    parser.add_argument("--_memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        return _memory_child(args._memory_child)

    if args.gradient_ablation:
        print("Experts alone on [E, 256, 512] buffers, step time relative to the dense FFN")
        print(f"{'experts':>8} {'dense s':>9} {'tfmoe grads':>12} {'autodiff grads':>15}")
        for num_experts in args.experts:
            x = tf.random.normal([num_experts, TOKENS_PER_EXPERT, HIDDEN])
            times = time_steps({kind: make_layer(kind, num_experts)
                                for kind in ("dense", "experts", "experts_autodiff")},
                               x, args.repeats)
            d = times["dense"]
            print(f"{num_experts:>8} {d:>9.3f} {times['experts'] / d:>12.2f} "
                  f"{times['experts_autodiff'] / d:>15.2f}", flush=True)
        return

    if args.skip_timing:
        args.experts_for_timing, args.anchor_experts = [], []
    else:
        args.experts_for_timing = args.experts
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"dispatch={args.dispatch}, jit_compile={args.jit_compile}, best of {args.repeats}")
    if args.experts_for_timing:
        print("\n1. Scaling in experts: input [E, 256, 512], capacity factor 1.0, "
              "step time relative to the dense FFN")
        print(f"{'experts':>8} {'dense s':>9} {'switch/dense':>13} {'top2/dense':>11}")
    for num_experts in args.experts_for_timing:
        x = tf.random.normal([num_experts, TOKENS_PER_EXPERT, HIDDEN])
        times = time_steps({kind: make_layer(kind, num_experts, args.dispatch)
                            for kind in ("dense", "switch", "top2")},
                           x, args.repeats, args.jit_compile)
        print(f"{num_experts:>8} {times['dense']:>9.3f} {times['switch'] / times['dense']:>13.2f}"
              f" {times['top2'] / times['dense']:>11.2f}", flush=True)

    if args.anchor_experts:
        print("\n2. Anchors: input [16, 256, 512]; step time relative to dense, and "
              "keras-hub MixtralSparseMoeBlock's time over ours")
        print(f"{'experts':>8} {'dense s':>9} {'mixtral/dense':>14} {'switch/dense':>13} "
              f"{'top2/dense':>11} {'mixtral/top2':>13} {'mixtral/switch':>15}")
        x = tf.random.normal([16, 256, HIDDEN])
        for num_experts in args.anchor_experts:
            times = time_steps({kind: make_layer(kind, num_experts, args.dispatch)
                                for kind in ("dense", "switch", "top2", "mixtral")},
                               x, args.repeats, args.jit_compile)
            d = times["dense"]
            print(f"{num_experts:>8} {d:>9.3f} {times['mixtral'] / d:>14.2f} "
                  f"{times['switch'] / d:>13.2f} {times['top2'] / d:>11.2f} "
                  f"{times['mixtral'] / times['top2']:>13.1f} "
                  f"{times['mixtral'] / times['switch']:>15.1f}", flush=True)

    if not args.skip_memory:
        print("\n3. Peak memory of one step (RSS growth, MB), input [E, 256, 512]")
        print(f"{'experts':>8} {'dense MB':>9} {'switch/dense':>13} {'top2/dense':>11}")
        for num_experts in args.experts:
            shape = [num_experts, TOKENS_PER_EXPERT, HIDDEN]
            mem = {kind: peak_memory_mb(kind, num_experts, shape)
                   for kind in ("dense", "switch", "top2")}
            print(f"{num_experts:>8} {mem['dense']:>9.0f} {mem['switch'] / mem['dense']:>13.2f}"
                  f" {mem['top2'] / mem['dense']:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
