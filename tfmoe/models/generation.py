"""Autoregressive generation helpers shared by the seq2seq and decoder-only models.

Generation reuses the keras-hub samplers (`"greedy"`, `"top_k"`, `"top_p"`,
`"random"`, ... or a `keras_hub.samplers.Sampler`): the sampler runs a
`while_loop` over positions and asks the model for next-token logits through a
`next(prompt, cache, index)` callback, as in keras-hub's `CausalLM.generate_step`.
"""

import keras_hub
import tensorflow as tf
from keras import ops


def resolve_sampler(sampler):
    """A keras-hub sampler from a name / config dict / instance."""
    if isinstance(sampler, keras_hub.samplers.Sampler):
        return sampler
    if isinstance(sampler, (str, dict)):
        return keras_hub.samplers.get(sampler)
    raise ValueError(
        f"`sampler` must be a name (e.g. 'greedy', 'top_k'), a config dict or a "
        f"keras_hub.samplers.Sampler, got {sampler!r}.")


def resolve_stop_token_ids(stop_token_ids, default):
    """`"auto"` -> `(default,)`; None -> None; an int or sequence -> tuple of ints."""
    if stop_token_ids is None:
        return None
    if isinstance(stop_token_ids, str):
        if stop_token_ids != "auto":
            raise ValueError(f"`stop_token_ids` must be 'auto', None or ids, got "
                             f"{stop_token_ids!r}.")
        return (int(default),)
    if isinstance(stop_token_ids, int):
        return (stop_token_ids,)
    return tuple(int(i) for i in stop_token_ids)


def pad_prompt(token_ids, padding_mask, max_length, pad_token_id):
    """Right-pads (or checks) a `[batch, seq]` prompt to `max_length` columns.

    Returns int32 `token_ids` and bool `padding_mask`, both `[batch, max_length]`.
    """
    token_ids = tf.cast(tf.convert_to_tensor(token_ids), tf.int32)
    if token_ids.shape.rank != 2:
        raise ValueError(f"Prompt token ids must be [batch, seq], got {token_ids.shape}.")
    if padding_mask is None:
        padding_mask = tf.ones_like(token_ids, tf.bool)
    padding_mask = tf.cast(tf.convert_to_tensor(padding_mask), tf.bool)
    length = token_ids.shape[1]
    if max_length is None:
        max_length = length
    if length > max_length:
        raise ValueError(
            f"`max_length` ({max_length}) is shorter than the prompt ({length} tokens).")
    pad = max_length - length
    token_ids = tf.pad(token_ids, [[0, 0], [0, pad]], constant_values=pad_token_id)
    padding_mask = tf.pad(padding_mask, [[0, 0], [0, pad]], constant_values=False)
    # Positions that are not prompt hold the pad id until generated.
    token_ids = tf.where(padding_mask, token_ids, pad_token_id)
    return token_ids, padding_mask


def first_generated_index(padding_mask):
    """The sampler's start index: the shortest prompt length (at least 1)."""
    lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=-1)
    return ops.maximum(ops.min(lengths), 1)


def finalize(token_ids, prompt_mask, stop_token_ids, pad_token_id):
    """Marks tokens after the first generated stop token as padding (keras-hub rule).

    Returns `token_ids` (pad id after the end) and the bool `padding_mask`: true for
    prompt and generated tokens up to and including the stop token.
    """
    if stop_token_ids is None:
        padding_mask = ops.ones_like(token_ids, dtype="bool")
    else:
        generated = ops.logical_not(prompt_mask)
        end = ops.zeros_like(token_ids, dtype="bool")
        for stop in stop_token_ids:
            end = ops.logical_or(end, ops.logical_and(generated, token_ids == stop))
        end = ops.cast(end, "int32")
        after_end = ops.cumsum(end, axis=-1) - end
        padding_mask = ops.logical_not(ops.cast(after_end, "bool"))
    token_ids = ops.where(padding_mask, token_ids, pad_token_id)
    return token_ids, padding_mask


class GenerateFunctionCache:
    """One traced `tf.function` per (sampler, stop ids, cache use) of a model.

    `get(sampler, stop_token_ids, use_cache, make_fn)` returns the cached function, or
    wraps `make_fn(resolved_sampler)` in a `tf.function` the first time.
    """

    def __init__(self):
        self._functions = {}

    def get(self, sampler, stop_token_ids, use_cache, make_fn):
        sampler_key = sampler if isinstance(sampler, str) else repr(sampler) if isinstance(
            sampler, dict) else id(sampler)
        key = (sampler_key, stop_token_ids, bool(use_cache))
        if key not in self._functions:
            resolved = resolve_sampler(sampler)
            # Keep the sampler alive with its function (ids of dead objects get reused).
            self._functions[key] = (resolved, tf.function(make_fn(resolved),
                                                          reduce_retracing=True))
        return self._functions[key][1]


def generate_tokens(sampler, token_ids, prompt_mask, *, stop_token_ids, pad_token_id, model,
                    cached_step=None, cache=None, full_forward=None):
    """Runs `sampler` over right-padded prompts and finalizes the result.

    Give either `cached_step(token [batch, 1], cache, position) -> (logits [batch, 1, V],
    cache)` with the prefilled `cache`, or `full_forward(token_ids, padding_mask) ->
    logits [batch, max_length, V]` (no cache: one full pass per new token).

    Returns `finalize(...)` of the sampled `[batch, max_length]` ids.
    """
    if (cached_step is None) == (full_forward is None):
        raise ValueError("Give exactly one of `cached_step` and `full_forward`.")
    batch_size, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    index = first_generated_index(prompt_mask)

    if cached_step is not None:
        def next_fn(prompt, cache, index):
            token = ops.slice(prompt, [0, index - 1], [batch_size, 1])
            logits, cache = cached_step(token, cache, index - 1)
            return logits[:, 0], None, cache
    else:
        def next_fn(prompt, cache, index):
            mask = ops.broadcast_to(ops.arange(max_length)[None, :] < index,
                                    ops.shape(prompt))
            logits = full_forward(prompt, mask)
            return ops.take(logits, index - 1, axis=1), None, cache

    token_ids = sampler(next_fn, token_ids, cache=cache, index=index, mask=prompt_mask,
                        stop_token_ids=stop_token_ids, model=model)
    return finalize(token_ids, prompt_mask, stop_token_ids, pad_token_id)
