"""CLI: `python -m tfmoe.convert --hf_dir DIR --output PRESET_DIR [options]`.

Converts a Hugging Face `SwitchTransformersForConditionalGeneration` directory (config,
safetensors weights, T5 `spiece.model`) into a keras-hub preset directory of a
`tfmoe.models.SwitchSeq2SeqLM` (config, weights, tokenizer), with a progress bar per
tensor. Load it with `SwitchSeq2SeqLM.from_preset(PRESET_DIR)`.
"""

import argparse
import logging
import os
import sys

PROG = "python -m tfmoe.convert"


def main(argv=None):
    """Runs the converter; returns the exit status (2 with one `error:` line on stderr
    for a bad checkpoint directory or output path)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a Hugging Face Switch Transformers checkpoint to a tfmoe "
        "keras-hub preset directory.",
    )
    parser.add_argument(
        "--hf_dir",
        required=True,
        help="directory with config.json, (sharded) safetensors and spiece.model",
    )
    parser.add_argument(
        "--output", required=True, help="preset directory to write (must not exist or be empty)"
    )
    capacity = parser.add_mutually_exclusive_group()
    capacity.add_argument(
        "--expert_capacity",
        type=int,
        default=None,
        help="slots per expert in each sequence (default: the config's expert_capacity)",
    )
    capacity.add_argument(
        "--eval_capacity_factor",
        type=float,
        default=None,
        help="inference capacity factor, instead of a per-sequence expert_capacity",
    )
    parser.add_argument(
        "--encoder_sequence_length", type=int, default=512, help="preprocessor encoder length"
    )
    parser.add_argument(
        "--decoder_sequence_length",
        type=int,
        default=128,
        help="preprocessor decoder length (generate's default max_length)",
    )
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output)
    if not os.path.isdir(os.path.dirname(output)):
        return fail(f"--output parent directory does not exist: {os.path.dirname(output)}")
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        return fail(f"--output exists and is not an empty directory: {args.output}")

    from tfmoe.convert.preset import hf_switch_to_preset

    _log_to_stdout()
    overrides = {}
    if args.expert_capacity is not None:
        overrides["expert_capacity"] = args.expert_capacity
    if args.eval_capacity_factor is not None:
        overrides.update(expert_capacity=None, eval_capacity_factor=args.eval_capacity_factor)
    try:
        model = hf_switch_to_preset(
            args.hf_dir,
            args.output,
            encoder_sequence_length=args.encoder_sequence_length,
            decoder_sequence_length=args.decoder_sequence_length,
            progress=True,
            **overrides,
        )
    except (ValueError, OSError) as error:  # OSError: FileNotFoundError, unwritable output
        return fail(
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
    print(f"Saved {model.count_params():,} parameters and the tokenizer to {args.output}")
    return 0


class _StdoutHandler(logging.StreamHandler):
    """Writes to the current `sys.stdout` (looked up per record, as the progress bar does)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        del value  # always the current sys.stdout


def _log_to_stdout():
    """The converter's log lines (ignored config fields) on stdout, with the progress bar."""
    logger = logging.getLogger("tfmoe.convert")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def fail(message):
    """Prints `message` as one error line on stderr; returns the exit status 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
