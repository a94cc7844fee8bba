"""keras-hub preset directories of trained tfmoe tasks: the format the scripts exchange.

`save_task_preset(model, directory, vocabulary, ...)` writes a trained task (trained
without a preprocessor, on `tfmoe.data` batches) with its tokenizer as a keras-hub
preset (`config.json`, `model.weights.h5`, `task.json`, `preprocessor.json`,
`tokenizer.json`, `assets/tokenizer/vocabulary.txt`); `load_task_preset(directory)`
loads any of them back as its task, and `init_backbone_from_preset(backbone, directory)`
copies a preset's backbone weights by name into another backbone (e.g. the encoder
of a pretrained seq2seq preset into a classifier's encoder-only backbone).
"""

import json
import os

import keras_hub

from tfmoe.models.switch_backbone import SwitchBackbone
from tfmoe.models.switch_backbone.switch_backbone import DECODER_ONLY, ENCODER_ONLY
from tfmoe.models.switch_causal_lm import SwitchCausalLM, SwitchCausalLMPreprocessor
from tfmoe.models.switch_seq2seq_lm import SwitchSeq2SeqLM, SwitchSeq2SeqLMPreprocessor
from tfmoe.models.switch_text_classifier import (
    SwitchTextClassifier,
    SwitchTextClassifierPreprocessor,
)
from tfmoe.models.switch_tokenizer import SwitchSeq2SeqTokenizer, SwitchTokenizer

# Variable paths of the input embeddings (`init_backbone_from_preset`).
TOKEN_EMBEDDING = "token_embedding/embeddings"
ENCODER_EMBEDDING = "encoder_token_embedding/embeddings"


def save_task_preset(
    model,
    directory,
    vocabulary,
    sequence_length,
    label_names=None,
    tokenizer=None,
    **tokenizer_options,
):
    """Writes `model` and a tokenizer of `vocabulary` as a keras-hub preset `directory`.

    Args:
      model: a trained `SwitchCausalLM`, `SwitchSeq2SeqLM` or `SwitchTextClassifier`.
      directory: the preset directory to write.
      vocabulary: the WordPiece vocabulary the model was trained with (file or list).
      sequence_length: the preprocessor's sequence length (seq2seq: encoder and
        decoder).
      label_names: class names of a classifier (saved in `task.json`).
      tokenizer: a keras-hub tokenizer to save instead of a `SwitchTokenizer` of
        `vocabulary` (e.g. the `SwitchSentencePieceTokenizer` of a converted checkpoint;
        `vocabulary` is then ignored).
      **tokenizer_options: `SwitchTokenizer` options (`lowercase`, `strip_accents`).

    `model` is left as it is (no preprocessor is attached to it: `fit` / `evaluate` on
    id batches keep working): the preset is written from a new task over the same
    backbone (and, for a classifier, a copy of its head).

    Raises:
      ValueError: an unsupported `model`, or `label_names` for a model that is not a
        classifier or of the wrong length.
    """

    def make_tokenizer(cls):
        return cls(vocabulary, **tokenizer_options) if tokenizer is None else tokenizer

    if isinstance(model, SwitchTextClassifier):
        preprocessor = SwitchTextClassifierPreprocessor(
            make_tokenizer(SwitchTokenizer), sequence_length=sequence_length
        )
        if label_names is None:
            label_names = model.label_names
        task = SwitchTextClassifier(
            model.backbone,
            num_classes=model.num_classes,
            preprocessor=preprocessor,
            label_names=label_names,
            pooling=model.pooling,
            dropout=model.dropout,
            activation=model.activation,
            compile=False,
        )
        task.classifier_head.set_weights(model.classifier_head.get_weights())
        task.save_to_preset(directory)
        return
    if label_names is not None:
        raise ValueError("`label_names` is only for classifiers.")
    if isinstance(model, SwitchSeq2SeqLM):
        preprocessor = SwitchSeq2SeqLMPreprocessor(
            make_tokenizer(SwitchSeq2SeqTokenizer),
            encoder_sequence_length=sequence_length,
            decoder_sequence_length=sequence_length,
        )
    elif isinstance(model, SwitchCausalLM):
        preprocessor = SwitchCausalLMPreprocessor(
            make_tokenizer(SwitchTokenizer), sequence_length=sequence_length
        )
    else:
        raise ValueError(
            f"`model` must be a SwitchCausalLM, SwitchSeq2SeqLM or "
            f"SwitchTextClassifier, got {type(model).__name__}."
        )
    type(model)(model.backbone, preprocessor=preprocessor, compile=False).save_to_preset(directory)


def task_base_class(directory):
    """The keras-hub task base class (`CausalLM`, `Seq2SeqLM` or `TextClassifier`) of
    the tfmoe preset `directory`, read from its `config.json` / `task.json`.

    Raises:
      FileNotFoundError: no `config.json` in `directory`.
      ValueError: not a tfmoe preset.
    """
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"not a preset directory (no config.json): {directory}")
    with open(config_path) as f:
        backbone = json.load(f)
    name = backbone.get("registered_name", "")
    if name == "tfmoe>SwitchSeq2SeqBackbone":
        return keras_hub.models.Seq2SeqLM
    if name != "tfmoe>SwitchBackbone":
        raise ValueError(f"{directory} is not a tfmoe preset (backbone {name!r}).")
    layout = backbone.get("config", {}).get("layout")
    return {DECODER_ONLY: keras_hub.models.CausalLM, ENCODER_ONLY: keras_hub.models.TextClassifier}[
        layout
    ]


def load_task_preset(directory, **kwargs):
    """The task saved in preset `directory` (`SwitchCausalLM`, `SwitchSeq2SeqLM` or
    `SwitchTextClassifier`, with its preprocessor); `kwargs` go to keras-hub's
    `from_preset`."""
    return task_base_class(directory).from_preset(directory, **kwargs)


def encoder_only_config(directory):
    """`SwitchBackbone` arguments of the encoder half of seq2seq preset `directory`
    (its `config.json`, with `layout="encoder_only"`): the architecture of a classifier
    initialised from it with `init_backbone_from_preset`.

    Raises:
      ValueError: `directory` is not a seq2seq preset.
    """
    if task_base_class(directory) is not keras_hub.models.Seq2SeqLM:
        raise ValueError(f"{directory} is not a seq2seq preset.")
    with open(os.path.join(directory, "config.json")) as f:
        config = dict(json.load(f)["config"])
    for key in (
        "name",
        "trainable",
        "dtype",
        "layout",
        "num_decoder_layers",
        "decoder_sparse_step",
        "decoder_start_token_id",
        "separate_input_embeddings",
    ):
        config.pop(key, None)
    return dict(config, layout=ENCODER_ONLY)


def init_backbone_from_preset(backbone, directory):
    """Copies every weight of `backbone` from the backbone saved in preset `directory`.

    Weights are matched by their variable path (`token_embedding/embeddings`,
    `encoder/block_0/self_attention/q`, ...), so an encoder-only backbone takes the
    embedding and encoder of a seq2seq preset; weights of the preset that `backbone`
    lacks (the decoder, an untied output matrix) are ignored.

    Returns:
      The number of weights copied.

    Raises:
      ValueError: listing the weights of `backbone` that the preset lacks or holds
        with another shape.
    """
    source = {v.path: v for v in SwitchBackbone.from_preset(directory).weights}
    # An encoder-only backbone embeds with the encoder's own input embedding, if any.
    if backbone.layout == ENCODER_ONLY and ENCODER_EMBEDDING in source:
        source[TOKEN_EMBEDDING] = source[ENCODER_EMBEDDING]
    problems = []
    for variable in backbone.weights:
        match = source.get(variable.path)
        if match is None:
            problems.append(f"{variable.path}: not in the preset")
        elif tuple(match.shape) != tuple(variable.shape):
            problems.append(
                f"{variable.path}: preset {tuple(match.shape)} vs {tuple(variable.shape)}"
            )
    if problems:
        raise ValueError(f"The backbone of {directory} does not fit: " + "; ".join(problems))
    for variable in backbone.weights:
        variable.assign(source[variable.path])
    return len(backbone.weights)
