"""`make demo`: the main job on the bundled default corpus (about 5 minutes on 2 CPU cores).

1. Pre-trains a tiny sparse decoder LM on the Jargon File with the bundled WordPiece
   vocabulary, through `tfmoe.training.run_pretraining` (the code of
   `experiments/pretrain.py`). The default, `glam_tiny_8` (4 layers of 8 top-2 experts,
   the FLOPs per token of `dense_lm_tiny`), is the sparse preset that learns fastest at
   this budget (`docs/results/compare.md`); `--model=switch_lm_tiny_8` trains the top-1
   Switch model instead.
2. Prints the validation perplexity and the load of every expert.
3. Exports it as a SavedModel with `tfmoe.export.export_saved_model` in TF Serving's
   layout, `--export_dir/--version/` (default `saved_models/demo_lm/1/`; TF Serving's
   model base path is `--export_dir`). Skipped with a message when `tfmoe.export` is not
   available.
4. Answers one request: continues a prompt (through the exported model when there
   is one, else with `model.generate`).

Options: `python -m tfmoe.demo --steps=300 --model=switch_lm_tiny_8 --output_dir=runs/demo`.
Running it again resumes / reuses the finished run in `--output_dir`.
"""

import argparse
import os
import shutil
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROMPT = "a hacker is"
DEFAULT_MODEL = "glam_tiny_8"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="decoder-only preset to train")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--steps_per_epoch", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--sequence_length", type=int, default=64)
    parser.add_argument("--output_dir", default=os.path.join("runs", "demo"))
    parser.add_argument(
        "--export_dir",
        default=os.path.join("saved_models", "demo_lm"),
        help="model directory (TF Serving's base path); the SavedModel goes to EXPORT_DIR/VERSION/",
    )
    parser.add_argument(
        "--version",
        type=int,
        default=1,
        help="model version: the SavedModel's sub-directory (replaced if present)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete --output_dir first")
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args(argv)
    if args.version < 1:
        parser.error(f"--version must be a positive integer, got {args.version}")
    return args


def answer_with_model(model, tokenizer, prompt, max_length=24):
    import numpy as np
    import tensorflow as tf

    ids = tokenizer(tf.constant([prompt])).to_tensor().numpy().astype("int32")[:, :max_length]
    # Without a preprocessor, `generate` takes the prompt right-padded to `max_length`.
    mask = np.arange(max_length)[None, :] < ids.shape[1]
    ids = np.pad(ids, [(0, 0), (0, max_length - ids.shape[1])])
    model.compile(sampler="greedy")
    out = model.generate(
        {"token_ids": ids, "padding_mask": mask}, stop_token_ids=(model.backbone.eos_token_id,)
    )
    tokens = out["token_ids"][0][: int(np.sum(out["padding_mask"][0]))]
    return tokenizer.detokenize(tf.constant(tokens)[None])[0].numpy().decode("utf-8", "replace")


def export_and_answer(model, tokenizer, export_dir, version, prompt):
    """Exports to `export_dir/version/` with `tfmoe.export` if it is there.

    Returns the answer of the exported `serving_default` to `prompt`, or None without
    `tfmoe.export`.
    """
    try:
        from tfmoe.export import export_saved_model
    except ImportError as error:
        print(f"export: skipped (tfmoe.export is not available: {error})")
        return None
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (ops of the serving graph)

    # Only this version is replaced; other versions in `export_dir` stay (TF Serving serves
    # the highest).
    shutil.rmtree(os.path.join(export_dir, str(version)), ignore_errors=True)
    version_dir = export_saved_model(model, tokenizer, export_dir, version=version)
    print(f"export: SavedModel written to {version_dir}")
    served = tf.saved_model.load(version_dir).signatures["serving_default"]
    outputs = served(text=tf.constant([prompt]))
    texts = {
        name: value.numpy()[0].decode("utf-8", "replace")
        for name, value in outputs.items()
        if value.dtype == tf.string
    }
    return " | ".join(f"{name}: {text!r}" for name, text in texts.items()) or str(
        {name: value.numpy()[0].tolist() for name, value in outputs.items()}
    )


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    from tfmoe.training import PretrainConfig, format_summary, run_pretraining

    if args.fresh:
        shutil.rmtree(args.output_dir, ignore_errors=True)
    print(
        f"tfmoe demo: pre-training {args.model} on the bundled Jargon File for {args.steps} steps "
        f"({args.batch_size}x{args.sequence_length} tokens per step), outputs in {args.output_dir}"
    )
    result = run_pretraining(
        PretrainConfig(
            model=args.model,
            dataset="default",
            steps=args.steps,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            sequence_length=args.sequence_length,
            learning_rate=2e-3,
            warmup_steps=30,
            output_dir=args.output_dir,
            verbose=2 if not sys.stdout.isatty() else 1,
        )
    )
    print()
    print(format_summary(result))
    print(
        f"plots: {os.path.join(args.output_dir, 'loss_curves.png')}, "
        f"{os.path.join(args.output_dir, 'expert_load_heatmap.png')}"
    )
    model, tokenizer = result["model_object"], result["tokenizer"]
    served = export_and_answer(model, tokenizer, args.export_dir, args.version, args.prompt)
    if served is not None:
        print(f"request {args.prompt!r} -> served by the SavedModel: {served}")
    else:
        print(
            f"request {args.prompt!r} -> model.generate: {answer_with_model(model, tokenizer, args.prompt)!r}"
        )
    print(f"demo finished in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
