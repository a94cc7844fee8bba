"""Serving functions of each model kind: raw `tf.string` in, named tensors out.

`build_signatures(model, tokenizer, options)` returns `{name: (fn, input_signature)}`
for `keras.export.ExportArchive.add_endpoint`. The model part of each function runs
with `training=False` (MoE layers use `eval_capacity_factor`) and, where
`options.jit_compile`, inside an XLA-compiled `tf.function`; tokenization stays
outside XLA (tf-text kernels are CPU ops without XLA kernels).

Every signature refuses requests of more than `options.max_batch_rows` strings and runs
the rest in chunks of `options.chunk_rows` rows (`tfmoe.export.limits`): each builder
writes the per-chunk work (`[rows]` strings in, `{name: [rows, ...]}` out) and
`_in_chunks` turns it into the signature.
"""

import keras_hub
import tensorflow as tf

from tfmoe.export import limits, scoring, text_inputs
from tfmoe.models import SwitchClassifier, SwitchDecoderLM, SwitchTransformer

TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")
TARGET_SPEC = tf.TensorSpec([None], tf.string, name="target")
MAX_NEW_TOKENS_SPEC = tf.TensorSpec([], tf.int32, name="max_new_tokens")


def model_kind(model):
    """ "classifier", "causal_lm" or "seq2seq"; ValueError naming `model` otherwise."""
    for kind, cls in (
        ("classifier", SwitchClassifier),
        ("causal_lm", SwitchDecoderLM),
        ("seq2seq", SwitchTransformer),
    ):
        if isinstance(model, cls):
            return kind
    raise ValueError(
        f"`model` must be a tfmoe SwitchClassifier, SwitchDecoderLM or SwitchTransformer "
        f"(SwitchTextClassifier, SwitchCausalLM or SwitchSeq2SeqLM), got {type(model).__name__}."
    )


def build_signatures(model, tokenizer, options):
    """`{signature name: (fn, input_signature)}` for `model`; see `ExportOptions`."""
    builder = {"classifier": _classifier, "causal_lm": _causal_lm, "seq2seq": _seq2seq}[
        model_kind(model)
    ]
    return builder(model, tokenizer, options)


class _Text:
    """Tokenization + packing rules shared by the builders of one export."""

    def __init__(self, model, tokenizer, options):
        self.tokenizer = tokenizer
        self.options = options
        self.pad = model.backbone.pad_token_id
        self.eos = options.eos_token_id

    def ids(self, text):
        return text_inputs.token_ids(self.tokenizer, text)

    def pack(self, text, length=None, **kwargs):
        return text_inputs.pack(
            self.ids(text), length or self.options.sequence_length, self.pad, **kwargs
        )

    def generated(self, ids):
        """Generated ids `[batch, n]` -> named outputs; the first stop token and all
        after it become the pad id. Ids beyond the tokenizer's vocabulary read `[UNK]`
        in the text."""
        ids = text_inputs.ids_until_stop(ids, self.eos, self.pad)
        return {
            "generated_text": tf.reshape(self.tokenizer.detokenize(ids), [-1]),
            "generated_token_ids": ids,
        }


def _compiled(fn, options):
    return tf.function(fn, jit_compile=options.jit_compile, reduce_retracing=True)


def _in_chunks(fn, options):
    """Signature from the per-chunk work `fn(*row_inputs) -> {name: [rows, ...]}`:
    checks the request size, then maps `fn` over chunks of `options.chunk_rows` rows."""

    def signature(*row_inputs):
        row_inputs = limits.check_rows(options.max_batch_rows, *row_inputs)
        return limits.map_row_chunks(fn, row_inputs, options.chunk_rows)

    return signature


def _encoder_embedding(model):
    """`(ids, mask) -> mean-pooled encoder states float32 [batch, hidden]`."""

    def embed(ids, mask):
        return scoring.masked_mean(model.backbone.encode(ids, mask), mask)

    return embed


def _classifier(model, tokenizer, options):
    text_rules = _Text(model, tokenizer, options)
    # T5 SentencePiece has no class token, and ends inputs with its eos.
    cls = getattr(tokenizer, "cls_token_id", None)
    sep = getattr(tokenizer, "sep_token_id", getattr(tokenizer, "eos_token_id", None))
    prefix, suffix = (
        tuple(i for i in (cls,) if i is not None),
        tuple(i for i in (sep,) if i is not None),
    )
    label_names = tf.constant(options.label_names, tf.string)
    logits_fn = _compiled(
        lambda ids, mask: model({"token_ids": ids, "padding_mask": mask}, training=False), options
    )
    embed_fn = _compiled(_encoder_embedding(model), options)

    def classify(text):
        ids, mask, _ = text_rules.pack(text, prefix=prefix, suffix=suffix)
        probabilities = tf.nn.softmax(tf.cast(logits_fn(ids, mask), tf.float32), axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "label": tf.gather(label_names, label_id),
            "label_id": label_id,
            "probabilities": probabilities,
        }

    def embed(text):
        ids, mask, _ = text_rules.pack(text, prefix=prefix, suffix=suffix)
        return {"embedding": embed_fn(ids, mask)}

    return {
        "serving_default": (_in_chunks(classify, options), [TEXT_SPEC]),
        "embed": (_in_chunks(embed, options), [TEXT_SPEC]),
    }


def _generation_signatures(generate_ids, text_rules, options):
    """`serving_default` (fixed `max_new_tokens`) and `generate` (clipped input) from
    `generate_ids(text) -> int32 [batch, options.max_new_tokens]`.

    `generate` with `max_new_tokens <= 0` returns empty continuations without running
    the model; any other count runs the export's `max_new_tokens` steps and cuts.
    """
    serving_default = _in_chunks(lambda text: text_rules.generated(generate_ids(text)), options)

    def generate(text, max_new_tokens):
        (text,) = limits.check_rows(options.max_batch_rows, text)
        count = tf.clip_by_value(max_new_tokens, 0, options.max_new_tokens)

        def continuations():
            return limits.map_row_chunks(
                lambda chunk: text_rules.generated(generate_ids(chunk)[:, :count]),
                [text],
                options.chunk_rows,
            )

        def empty():
            rows = tf.shape(text)[0]
            return {
                "generated_text": tf.fill([rows], ""),
                "generated_token_ids": tf.zeros([rows, 0], tf.int32),
            }

        return tf.cond(count > 0, continuations, empty)

    return {
        "serving_default": (serving_default, [TEXT_SPEC]),
        "generate": (generate, [TEXT_SPEC, MAX_NEW_TOKENS_SPEC]),
    }


def _causal_lm(model, tokenizer, options):
    """Prompts and scored texts start with the end-of-text id (the document separator
    of `tfmoe.data.causal_lm`); prompts keep their last tokens when truncated."""
    text_rules = _Text(model, tokenizer, options)
    eos, length, new = options.eos_token_id, options.sequence_length, options.max_new_tokens
    pad = text_rules.pad
    sampler = keras_hub.samplers.GreedySampler()

    def log_likelihood(ids, mask):
        """Packed `[batch, length + 1]` texts -> log-likelihood of ids `1:` given `:-1`."""
        logits = model({"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, training=False)
        return scoring.sequence_log_likelihood(logits, ids[:, 1:], mask[:, 1:])

    log_likelihood_fn = _compiled(log_likelihood, options)

    def generate_ids(text):
        ids, mask, lengths = text_rules.pack(text, prefix=(eos,), keep="last")
        # The prompt, right-padded with `new` free positions (mask false: generated).
        ids = tf.pad(ids, [[0, 0], [0, new]], constant_values=pad)
        mask = tf.pad(mask, [[0, 0], [0, new]], constant_values=False)
        out = model.generate_step(
            {"token_ids": ids, "padding_mask": mask}, stop_token_ids=(eos,), sampler=sampler
        )["token_ids"]
        positions = lengths[:, None] + tf.range(new, dtype=tf.int32)[None, :]
        return tf.gather(out, positions, batch_dims=1)

    def score(text):
        ids, mask, _ = text_rules.pack(text, length + 1, prefix=(eos,), suffix=(eos,))
        total, count = log_likelihood_fn(ids, mask)
        return {"log_likelihood": total, "num_tokens": count}

    signatures = _generation_signatures(generate_ids, text_rules, options)
    signatures["score"] = (_in_chunks(score, options), [TEXT_SPEC])
    return signatures


def _seq2seq(model, tokenizer, options):
    """Encoder inputs are `text + [eos]` (as in `tfmoe.data.span_corruption`); the
    decoder starts from the backbone's `decoder_start_token_id`."""
    text_rules = _Text(model, tokenizer, options)
    eos, new = options.eos_token_id, options.max_new_tokens
    start = model.backbone.decoder_start_token_id
    sampler = keras_hub.samplers.GreedySampler()
    embed_fn = _compiled(_encoder_embedding(model), options)

    def log_likelihood(source_ids, source_mask, target_ids, target_mask):
        """Packed `[batch, target_length + 1]` targets -> log-likelihood of target ids
        `1:` given the source and target ids `:-1`."""
        logits = model(
            {
                "encoder_token_ids": source_ids,
                "encoder_padding_mask": source_mask,
                "decoder_token_ids": target_ids[:, :-1],
                "decoder_padding_mask": target_mask[:, :-1],
            },
            training=False,
        )
        return scoring.sequence_log_likelihood(logits, target_ids[:, 1:], target_mask[:, 1:])

    log_likelihood_fn = _compiled(log_likelihood, options)

    def generate_ids(text):
        ids, mask, _ = text_rules.pack(text, suffix=(eos,))
        # Decoder prompt: the start token, then `new` positions to generate.
        rows = tf.shape(ids)[0]
        decoder_ids = tf.concat(
            [
                tf.fill([rows, 1], tf.cast(start, tf.int32)),
                tf.fill([rows, new], tf.cast(text_rules.pad, tf.int32)),
            ],
            1,
        )
        decoder_mask = tf.range(new + 1)[None, :] < tf.ones([rows, 1], tf.int32)
        out = model.generate_step(
            {
                "encoder_token_ids": ids,
                "encoder_padding_mask": mask,
                "decoder_token_ids": decoder_ids,
                "decoder_padding_mask": decoder_mask,
            },
            stop_token_ids=(eos,),
            sampler=sampler,
        )["decoder_token_ids"]
        return out[:, 1:]

    def score(text, target):
        ids, mask, _ = text_rules.pack(text, suffix=(eos,))
        target_ids, target_mask, _ = text_rules.pack(
            target, options.target_sequence_length + 1, prefix=(start,), suffix=(eos,)
        )
        total, count = log_likelihood_fn(ids, mask, target_ids, target_mask)
        return {"log_likelihood": total, "num_tokens": count}

    def embed(text):
        ids, mask, _ = text_rules.pack(text, suffix=(eos,))
        return {"embedding": embed_fn(ids, mask)}

    signatures = _generation_signatures(generate_ids, text_rules, options)
    signatures["score"] = (_in_chunks(score, options), [TEXT_SPEC, TARGET_SPEC])
    signatures["embed"] = (_in_chunks(embed, options), [TEXT_SPEC])
    return signatures
