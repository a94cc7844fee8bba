"""Hugging Face Switch Transformers directory -> keras-hub preset directory.

`hf_switch_to_preset(hf_dir, preset_dir)` converts the checkpoint (`from_hf_switch`),
adds a `SwitchSeq2SeqLMPreprocessor` with the checkpoint's T5 SentencePiece tokenizer
(`spiece.model`) and writes `preset_dir` with `save_to_preset`: `config.json`,
`model.weights.h5`, `task.json`, `preprocessor.json`, `tokenizer.json` and
`assets/tokenizer/spiece.model`. Load it with `SwitchSeq2SeqLM.from_preset(preset_dir)`.
"""

import json
import os

from tfmoe.convert.hf_switch import read_hf_config, switch_transformer_arguments
from tfmoe.convert.safetensors_checkpoint import SafetensorsCheckpoint

SPIECE_FILE = "spiece.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# T5's tokenizer: 100 sentinels unless `tokenizer_config.json` says otherwise.
DEFAULT_EXTRA_IDS = 100
# Preprocessor lengths: T5's 512 input tokens; 128 target tokens for `generate`.
DEFAULT_ENCODER_SEQUENCE_LENGTH = 512
DEFAULT_DECODER_SEQUENCE_LENGTH = 128


def hf_switch_to_preset(
    hf_dir,
    preset_dir,
    encoder_sequence_length=DEFAULT_ENCODER_SEQUENCE_LENGTH,
    decoder_sequence_length=DEFAULT_DECODER_SEQUENCE_LENGTH,
    progress=False,
    **overrides,
):
    """Converts Hugging Face directory `hf_dir` into keras-hub preset `preset_dir`.

    Args:
      hf_dir: a `save_pretrained` directory (`config.json`, safetensors weights) with
        the T5 tokenizer's `spiece.model` (and optionally `tokenizer_config.json`,
        whose `extra_ids` sets the number of sentinels; 100 by default).
      preset_dir: output directory; must not exist or be empty.
      encoder_sequence_length, decoder_sequence_length: preprocessor lengths (the
        decoder's is `generate`'s default `max_length`).
      progress: show a progress bar per tensor while the weights load.
      **overrides: `SwitchSeq2SeqBackbone` arguments (see `from_hf_switch`).

    Returns:
      The `SwitchSeq2SeqLM` written (with its preprocessor).

    Raises:
      FileNotFoundError: no `spiece.model` in `hf_dir` (or the errors of
        `from_hf_switch`).
      ValueError: `preset_dir` is not empty, the tokenizer has more ids than the model,
        or the errors of `from_hf_switch`.
    """
    preset_dir = os.fspath(preset_dir)
    if os.path.exists(preset_dir) and (not os.path.isdir(preset_dir) or os.listdir(preset_dir)):
        raise ValueError(f"Output {preset_dir!r} exists and is not an empty directory.")
    kwargs = switch_transformer_arguments(read_hf_config(hf_dir))
    checkpoint = SafetensorsCheckpoint(hf_dir)
    spiece_path = os.path.join(os.fspath(hf_dir), SPIECE_FILE)
    if not os.path.isfile(spiece_path):
        raise FileNotFoundError(f"No {SPIECE_FILE} (the T5 tokenizer) in {os.fspath(hf_dir)!r}.")
    extra_ids = _extra_ids(hf_dir)

    from tfmoe.convert.hf_switch import build_switch_transformer
    from tfmoe.models import SwitchSentencePieceTokenizer, SwitchSeq2SeqLMPreprocessor

    model = build_switch_transformer(kwargs, checkpoint, progress=progress, **overrides)
    tokenizer = SwitchSentencePieceTokenizer(spiece_path, extra_ids=extra_ids)
    if tokenizer.vocabulary_size() > kwargs["vocabulary_size"]:
        raise ValueError(
            f"{SPIECE_FILE} has {tokenizer.vocabulary_size()} ids (with "
            f"{extra_ids} sentinels), more than the model's vocab_size "
            f"({kwargs['vocabulary_size']})."
        )
    model.preprocessor = SwitchSeq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=encoder_sequence_length,
        decoder_sequence_length=decoder_sequence_length,
    )
    model.save_to_preset(preset_dir)
    return model


def _extra_ids(hf_dir):
    path = os.path.join(os.fspath(hf_dir), TOKENIZER_CONFIG_FILE)
    if not os.path.isfile(path):
        return DEFAULT_EXTRA_IDS
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}.") from None
    return (
        int(config.get("extra_ids", DEFAULT_EXTRA_IDS))
        if isinstance(config, dict)
        else (DEFAULT_EXTRA_IDS)
    )
