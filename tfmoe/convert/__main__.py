"""CLI: `python -m tfmoe.convert --hf_dir DIR --output model.keras [--eval_capacity_factor F]`.

Converts a Hugging Face `SwitchTransformersForConditionalGeneration` directory into a
`tfmoe.models.SwitchTransformer` and saves it as a Keras file (load it with
`keras.saving.load_model` after `import tfmoe`).
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tfmoe.convert",
        description="Convert a Hugging Face Switch Transformers checkpoint to tfmoe.")
    parser.add_argument("--hf_dir", required=True,
                        help="directory with config.json and (sharded) safetensors")
    parser.add_argument("--output", required=True, help="output .keras file")
    parser.add_argument("--eval_capacity_factor", type=float, default=None,
                        help="inference capacity factor (default: num_experts, no drops)")
    args = parser.parse_args(argv)
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end with .keras, got {args.output!r}")

    from tfmoe.convert.hf_switch import from_hf_switch

    overrides = {}
    if args.eval_capacity_factor is not None:
        overrides["eval_capacity_factor"] = args.eval_capacity_factor
    model = from_hf_switch(args.hf_dir, **overrides)
    model.save(args.output)
    print(f"Saved {model.count_params():,} parameters to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
