"""CLI: `python -m tfmoe.convert --hf_dir DIR --output model.keras [--eval_capacity_factor F]`.

Converts a Hugging Face `SwitchTransformersForConditionalGeneration` directory into a
`tfmoe.models.SwitchTransformer` (`SwitchSeq2SeqLM`) and saves it as a Keras file (load it with
`keras.saving.load_model` after `import tfmoe`).
"""

import argparse
import os
import sys

PROG = "python -m tfmoe.convert"


def main(argv=None):
    """Runs the converter; returns the exit status (2 with one `error:` line on stderr
    for a bad checkpoint directory or output path)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a Hugging Face Switch Transformers checkpoint to tfmoe.")
    parser.add_argument("--hf_dir", required=True,
                        help="directory with config.json and (sharded) safetensors")
    parser.add_argument("--output", required=True, help="output .keras file")
    parser.add_argument("--eval_capacity_factor", type=float, default=None,
                        help="inference capacity factor (default: num_experts, no drops)")
    args = parser.parse_args(argv)
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end with .keras, got {args.output!r}")
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(output_dir):
        return fail(f"--output directory does not exist: {output_dir}")

    from tfmoe.convert.hf_switch import from_hf_switch

    overrides = {}
    if args.eval_capacity_factor is not None:
        overrides["eval_capacity_factor"] = args.eval_capacity_factor
    try:
        model = from_hf_switch(args.hf_dir, **overrides)
        model.save(args.output)
    except (ValueError, OSError) as error:  # OSError: FileNotFoundError, unwritable output
        return fail(str(error).strip().splitlines()[0] if str(error).strip()
                    else type(error).__name__)
    print(f"Saved {model.count_params():,} parameters to {args.output}")
    return 0


def fail(message):
    """Prints `message` as one error line on stderr; returns the exit status 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
