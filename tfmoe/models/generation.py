"""Generation helpers shared by `SwitchCausalLM` and `SwitchSeq2SeqLM`.

Both run keras-hub's samplers (`compile(sampler=...)`) in their `generate_step`:
the sampler runs a `while_loop` over positions and asks the model for next-token
logits through a `next(prompt, cache, index)` callback over a key/value cache.
"""

from keras import ops


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
