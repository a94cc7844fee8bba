"""MoE layer speed and memory, as ratios measured side by side in one process.

Forward + backward step (gradients w.r.t. the weights and the input), best of
`--repeats` interleaved round-robin across the layers compared, hidden 512, intermediate
2048, float32, `tf.function` graphs.

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
  python benchmarks/moe_layer.py --layout_ablation --experts 8 32  # expert kernel layouts
  python benchmarks/moe_layer.py --matmul_floor --experts 8 32   # per-expert GEMMs vs one GEMM
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmoe  # noqa: E402

HIDDEN, INTERMEDIATE, TOKENS_PER_EXPERT = 512, 2048, 256


def make_layer(kind, num_experts, dispatch="gather"):
    if kind == "dense":
        return keras.Sequential(
            [
                keras.layers.Dense(INTERMEDIATE, activation="relu", use_bias=False),
                keras.layers.Dense(HIDDEN, use_bias=False),
            ]
        )
    if kind == "switch":
        return tfmoe.layers.SwitchFeedForward(
            num_experts, INTERMEDIATE, capacity_factor=1.0, dispatch=dispatch
        )
    if kind == "top2":
        return tfmoe.layers.Top2FeedForward(
            num_experts, INTERMEDIATE, capacity_factor=1.0, dispatch=dispatch
        )
    if kind in ("experts", "experts_token_major"):
        # The experts alone on [E, tokens, hidden] buffers: tfmoe's kernel layout against
        # the token-major one (the same weights and math, autodiff gradients in both).
        if kind == "experts":
            return tfmoe.layers.ExpertFeedForward(num_experts, INTERMEDIATE)
        return _TokenMajorExperts(num_experts)
    if kind == "mixtral":
        from keras_hub.src.models.mixtral.mixtral_decoder import MixtralSparseMoeBlock

        return MixtralSparseMoeBlock(HIDDEN, INTERMEDIATE, num_experts, top_k=2)
    raise ValueError(f"unknown layer kind {kind!r}")


class _TokenMajorExperts(keras.layers.Layer):
    """`ExpertFeedForward`'s computation with `wi` stored `[E, hidden, intermediate]` and
    token-major hidden activations `[E, tokens, intermediate]`: `relu(x @ wi) @ wo`."""

    def __init__(self, num_experts):
        super().__init__(name="token_major_experts")  # the class name is no valid TF scope
        self.num_experts = num_experts

    def build(self, input_shape):
        init = tfmoe.layers.ExpertVarianceScaling(0.1)
        self.wi = self.add_weight(shape=(self.num_experts, HIDDEN, INTERMEDIATE), initializer=init)
        self.wo = self.add_weight(shape=(self.num_experts, INTERMEDIATE, HIDDEN), initializer=init)

    def call(self, x, training=None):
        return tf.matmul(tf.nn.relu(tf.matmul(x, self.wi)), self.wo)


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
                [tf.zeros([])] + list(layer.losses)
            )
        grads = tape.gradient(loss, [inputs] + layer.trainable_variables)
        return loss, grads

    return step


def best_times(fns, repeats, short=()):
    """Best wall time of each zero-argument callable (its result fetched), repeats
    interleaved round-robin so that a busy stretch of the machine hits every one alike.
    Callables named in `short` run two rounds only."""
    best = dict.fromkeys(fns, float("inf"))
    for round_index in range(repeats):
        for kind, fn in fns.items():
            if kind in short and round_index >= 2:
                continue
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn())
            best[kind] = min(best[kind], time.perf_counter() - start)
    return best


def time_steps(layers, x, repeats, jit_compile=False):
    """Best step time of each layer (see `best_times`)."""
    steps = {}
    for kind, layer in layers.items():
        step = make_step(layer, x, jit_compile and kind != "mixtral")
        for _ in range(2):
            step(x)

        def loss_and_input_grad(step=step):
            # Fetching these two is enough: the graph computes every gradient anyway.
            loss, grads = step(x)
            return loss, grads[0]

        steps[kind] = loss_and_input_grad
    # MixtralSparseMoeBlock runs every expert on every token: two repeats are enough.
    return best_times(steps, repeats, short=("mixtral",))


def _first_element(fn):
    """`fn` as a graph that returns one element of its result: the product is computed
    in full, but fetching it costs nothing."""
    return tf.function(lambda: tf.reshape(fn(), [-1])[:1], autograph=False)


def matmul_floor(num_experts, repeats):
    """The expert FFN's six products (forward, input gradient and weight gradient of
    the `wi` and `wo` projections) as one 2-D GEMM over all `E * 256` tokens (what the
    dense FFN runs) and as E per-expert GEMMs of 256 tokens each, batched, in the forms
    `tfmoe.layers.experts.expert_feed_forward` and TensorFlow's `BatchMatMul`
    gradients run (kernels `[E, F, H]`, hidden activations `[E, F, T]`). Same FLOPs.

    Returns `{(weight, product): (2-D seconds, per-expert seconds)}`.
    """
    e, t, h, f = num_experts, TOKENS_PER_EXPERT, HIDDEN, INTERMEDIATE
    x, dy = tf.random.normal([e, t, h]), tf.random.normal([e, t, h])  # tokens [E, T, H]
    hid_t, dhid_t = tf.random.normal([e, f, t]), tf.random.normal([e, f, t])  # [E, F, T]
    w = tf.random.normal([e, f, h])  # wi, wo [E, F, H]
    x2, dy2 = tf.reshape(x, [-1, h]), tf.reshape(dy, [-1, h])  # [E*T, H]
    hid2 = dhid2 = tf.random.normal([e * t, f])  # [E*T, F]
    wi2, wo2 = tf.random.normal([h, f]), tf.random.normal([f, h])  # dense [in, out]
    mm = tf.matmul
    products = {
        ("wi", "forward"): (lambda: mm(x2, wi2), lambda: mm(w, x, adjoint_b=True)),
        ("wi", "input grad"): (
            lambda: mm(dhid2, wi2, transpose_b=True),
            lambda: mm(dhid_t, w, adjoint_a=True),
        ),
        ("wi", "weight grad"): (lambda: mm(x2, dhid2, transpose_a=True), lambda: mm(dhid_t, x)),
        ("wo", "forward"): (lambda: mm(hid2, wo2), lambda: mm(hid_t, w, adjoint_a=True)),
        ("wo", "input grad"): (
            lambda: mm(dy2, wo2, transpose_b=True),
            lambda: mm(w, dy, adjoint_b=True),
        ),
        ("wo", "weight grad"): (lambda: mm(hid2, dy2, transpose_a=True), lambda: mm(hid_t, dy)),
    }
    fns = {
        (weight, product, variant): _first_element(fn)
        for (weight, product), pair in products.items()
        for variant, fn in zip(("2-D", "experts"), pair)
    }
    for fn in fns.values():
        fn()
    best = best_times(fns, repeats)
    return {key: (best[key + ("2-D",)], best[key + ("experts",)]) for key in products}


def peak_memory_mb(kind, num_experts, shape):
    """Peak RSS growth (MB) of one step of `kind`, in a fresh subprocess."""
    out = subprocess.run(
        [sys.executable, __file__, "--_memory_child", json.dumps([kind, num_experts, shape])],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _memory_child(spec):
    kind, num_experts, shape = json.loads(spec)
    x = tf.random.normal(shape)
    layer = make_layer(kind, num_experts)
    layer.build(tuple(shape))  # weights only: no forward pass before the baseline
    step = make_step(layer, x, build_by_call=False)
    step.get_concrete_function(x)  # trace (no execution) before the baseline
    before_kb = _proc_status_kb("VmRSS")  # what is resident now, not the peak so far
    step(x)
    # VmHWM, not `getrusage`'s ru_maxrss: Linux carries ru_maxrss over from the parent
    # through fork + exec, so after the timing runs it reads the parent's peak.
    peak_kb = _proc_status_kb("VmHWM")
    print(max(0, peak_kb - before_kb) / 1024.0)


def _proc_status_kb(field):
    """A `/proc/self/status` memory field (`VmRSS`, `VmHWM`, ...) in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experts", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--anchor_experts", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument(
        "--layout_ablation",
        action="store_true",
        help="only time the experts in tfmoe's kernel layout vs token-major",
    )
    parser.add_argument(
        "--matmul_floor",
        action="store_true",
        help="only time E per-expert GEMMs against one GEMM of the same FLOPs",
    )
    parser.add_argument("--skip_timing", action="store_true")
    parser.add_argument("--dispatch", default="gather", choices=["gather", "einsum"])
    parser.add_argument(
        "--jit_compile", action="store_true", help="compile every step (dense included) with XLA"
    )
    parser.add_argument("--_memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        return _memory_child(args._memory_child)

    if args.layout_ablation:
        print("Experts alone on [E, 256, 512] buffers, step time relative to the dense FFN")
        print(f"{'experts':>8} {'dense s':>9} {'tfmoe layout':>13} {'token-major':>12}")
        for num_experts in args.experts:
            x = tf.random.normal([num_experts, TOKENS_PER_EXPERT, HIDDEN])
            times = time_steps(
                {
                    kind: make_layer(kind, num_experts)
                    for kind in ("dense", "experts", "experts_token_major")
                },
                x,
                args.repeats,
            )
            d = times["dense"]
            print(
                f"{num_experts:>8} {d:>9.3f} {times['experts'] / d:>13.2f} "
                f"{times['experts_token_major'] / d:>12.2f}",
                flush=True,
            )
        return

    if args.matmul_floor:
        print(
            "The FFN's products on E x 256 tokens: E per-expert GEMMs (batched) relative "
            "to one 2-D GEMM of the same FLOPs"
        )
        print(f"{'experts':>8} {'weight':>7} {'product':>12} {'2-D ms':>8} {'per-expert/2-D':>15}")
        for num_experts in args.experts:
            times = matmul_floor(num_experts, args.repeats)
            for (weight, product), (one, per_expert) in times.items():
                print(
                    f"{num_experts:>8} {weight:>7} {product:>12} {one * 1e3:>8.1f} "
                    f"{per_expert / one:>15.2f}",
                    flush=True,
                )
            total_one = sum(one for one, _ in times.values())
            total_experts = sum(per_expert for _, per_expert in times.values())
            print(
                f"{num_experts:>8} {'all':>7} {'six':>12} {total_one * 1e3:>8.1f} "
                f"{total_experts / total_one:>15.2f}",
                flush=True,
            )
        return

    if args.skip_timing:
        args.experts_for_timing, args.anchor_experts = [], []
    else:
        args.experts_for_timing = args.experts
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
        f"dispatch={args.dispatch}, jit_compile={args.jit_compile}, best of {args.repeats}"
    )
    if args.experts_for_timing:
        print(
            "\n1. Scaling in experts: input [E, 256, 512], capacity factor 1.0, "
            "step time relative to the dense FFN"
        )
        print(f"{'experts':>8} {'dense s':>9} {'switch/dense':>13} {'top2/dense':>11}")
    for num_experts in args.experts_for_timing:
        x = tf.random.normal([num_experts, TOKENS_PER_EXPERT, HIDDEN])
        times = time_steps(
            {
                kind: make_layer(kind, num_experts, args.dispatch)
                for kind in ("dense", "switch", "top2")
            },
            x,
            args.repeats,
            args.jit_compile,
        )
        print(
            f"{num_experts:>8} {times['dense']:>9.3f} {times['switch'] / times['dense']:>13.2f}"
            f" {times['top2'] / times['dense']:>11.2f}",
            flush=True,
        )

    if args.anchor_experts:
        print(
            "\n2. Anchors: input [16, 256, 512]; step time relative to dense, and "
            "keras-hub MixtralSparseMoeBlock's time over ours"
        )
        print(
            f"{'experts':>8} {'dense s':>9} {'mixtral/dense':>14} {'switch/dense':>13} "
            f"{'top2/dense':>11} {'mixtral/top2':>13} {'mixtral/switch':>15}"
        )
        x = tf.random.normal([16, 256, HIDDEN])
        for num_experts in args.anchor_experts:
            times = time_steps(
                {
                    kind: make_layer(kind, num_experts, args.dispatch)
                    for kind in ("dense", "switch", "top2", "mixtral")
                },
                x,
                args.repeats,
                args.jit_compile,
            )
            d = times["dense"]
            print(
                f"{num_experts:>8} {d:>9.3f} {times['mixtral'] / d:>14.2f} "
                f"{times['switch'] / d:>13.2f} {times['top2'] / d:>11.2f} "
                f"{times['mixtral'] / times['top2']:>13.1f} "
                f"{times['mixtral'] / times['switch']:>15.1f}",
                flush=True,
            )

    if not args.skip_memory:
        print("\n3. Peak memory of one step (RSS growth, MB), input [E, 256, 512]")
        print(f"{'experts':>8} {'dense MB':>9} {'switch/dense':>13} {'top2/dense':>11}")
        for num_experts in args.experts:
            shape = [num_experts, TOKENS_PER_EXPERT, HIDDEN]
            mem = {
                kind: peak_memory_mb(kind, num_experts, shape)
                for kind in ("dense", "switch", "top2")
            }
            print(
                f"{num_experts:>8} {mem['dense']:>9.0f} {mem['switch'] / mem['dense']:>13.2f}"
                f" {mem['top2'] / mem['dense']:>11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
