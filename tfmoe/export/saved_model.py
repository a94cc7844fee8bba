"""`export_saved_model`: one TF SavedModel with the tokenizer and the model inside."""

import os

import keras
import tensorflow as tf

from tfmoe.export.options import resolve_options
from tfmoe.export.signatures import build_signatures, model_kind


def export_saved_model(model, tokenizer, path, **task_options):
    """Writes a SavedModel that serves raw text (`tf.string [None]`, input `text`).

    Signatures (outputs are named tensors; `batch` is the number of strings):
      classifier (`SwitchClassifier`):
        `serving_default(text)` -> `label` string `[batch]`, `label_id` int32 `[batch]`,
        `probabilities` float32 `[batch, num_classes]`;
        `embed(text)` -> `embedding` float32 `[batch, hidden]` (mean-pooled encoder).
      decoder LM (`SwitchDecoderLM`) and encoder-decoder (`SwitchTransformer`):
        `serving_default(text)` -> `generated_text` string `[batch]`,
        `generated_token_ids` int32 `[batch, max_new_tokens]` (greedy, pad after the
        stop token);
        `generate(text, max_new_tokens)` -> the same, cut to `max_new_tokens` (int32
        scalar, clipped to `[0, max_new_tokens]` of the export);
        `score(text)` (LM) / `score(text, target)` (encoder-decoder) ->
        `log_likelihood` float32 `[batch]` (sum of log-probabilities of the text /
        target tokens and the end token), `num_tokens` int32 `[batch]`;
        `embed(text)` (encoder-decoder only) -> `embedding` float32 `[batch, hidden]`.

    Every signature refuses a request of more than `max_batch_rows` strings with an
    `InvalidArgument` error and runs the others in chunks of `chunk_rows` rows, one at
    a time, so peak memory is bounded by a chunk; `generate` with `max_new_tokens <= 0`
    returns empty continuations at once. See `docs/serving.md`, "Request limits".

    The vocabulary is a constant of the graph and the model variables are tracked once.
    Loading needs only `import tensorflow, tensorflow_text`.

    Args:
      model: a built `tfmoe.models` SwitchClassifier, SwitchDecoderLM or SwitchTransformer.
      tokenizer: `tfmoe.tokenize.WordpieceTokenizer` or `SentencePieceTokenizer`
        (ragged output: leave its `sequence_length` unset and, for SentencePiece,
        `add_eos` off; truncation is `sequence_length` below).
      path: output directory (`saved_models/NAME`, with `version`, or the version dir).
      **task_options: see `tfmoe.export.options.ExportOptions`: `sequence_length`
        (128), `max_new_tokens` (32), `target_sequence_length`, `label_names`,
        `eos_token_id`, `jit_compile` (True / False / "auto"), `version`,
        `max_batch_rows` (1024), `chunk_rows` (64).

    Returns:
      The directory written (`path`, or `path/version`).

    Raises:
      ValueError: unsupported `model`, mismatched `tokenizer`, or a bad task option.
    """
    kind = model_kind(model)
    if getattr(tokenizer, "sequence_length", None) is not None:
        raise ValueError(
            "`tokenizer` must return ragged ids (sequence_length=None); pass "
            "`sequence_length` to export_saved_model instead."
        )
    if tokenizer.vocabulary_size() > model.backbone.vocabulary_size:
        raise ValueError(
            f"`tokenizer` has {tokenizer.vocabulary_size()} tokens, more than "
            f"the model's vocabulary_size ({model.backbone.vocabulary_size})."
        )
    options = resolve_options(model, tokenizer, kind, **task_options)
    if options.version is not None:
        path = os.path.join(os.fspath(path), str(options.version))
    # Builds the tokenizer's lazily created detokenizer eagerly: created inside a serving
    # function it would be bound to that graph and break later eager `detokenize` calls.
    tokenizer.detokenize(tf.zeros([1, 1], tf.int32))
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The tokenizer's TF resources (the SentencePiece model) go into the SavedModel.
    archive.track(tokenizer)
    # `serving_default` first: ExportArchive makes the first endpoint the default.
    signatures = build_signatures(model, tokenizer, options)
    for name in sorted(signatures, key=lambda n: n != "serving_default"):
        fn, input_signature = signatures[name]
        archive.add_endpoint(name, fn, input_signature=input_signature)
    archive.write_out(os.fspath(path), verbose=False)
    return os.fspath(path)
