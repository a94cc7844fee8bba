"""Generation helpers shared by `SwitchCausalLM` and `SwitchSeq2SeqLM`.

Both run keras-hub's samplers (`compile(sampler=...)`) in their `generate_step`:
the sampler runs a `while_loop` over positions and asks the model for next-token
logits through a `next(prompt, cache, index)` callback over a key/value cache.
"""

from keras import ops


def empty_cache(backbone, num_layers, token_ids, dtype):
    """Zero self-attention keys/values for a decoder of `num_layers` over `token_ids`.

    Returns `[batch, num_layers, 2, max_length, heads, head_dim]` for `token_ids`
    `[batch, max_length]` (keras-hub's cache layout).
    """
    batch_size, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    shape = (batch_size, num_layers, 2, max_length, backbone.num_heads, backbone.key_value_dim)
    return ops.zeros(shape, dtype=dtype)


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


def sample(
    task, step, token_ids, padding_mask, cache, hidden_states, stop_token_ids=None, sampler=None
):
    """keras-hub's sampling loop over a prompt, then `finalize` (the tail of `generate_step`).

    Args:
      task: the `CausalLM` / `Seq2SeqLM` (its `sampler` and `backbone.pad_token_id`).
      step: `step(token, cache, index) -> (logits, hidden_states, cache)` for one token
        `[batch, 1]` written at cache position `index`.
      token_ids: `[batch, max_length]` int32 prompts, right-padded.
      padding_mask: `[batch, max_length]` bool, false where tokens are to be generated.
      cache: the cache after the prompt; hidden_states: its `[batch, max_length, hidden]`.
      stop_token_ids: ids that end a sequence, or None.
      sampler: a `keras_hub.samplers.Sampler`; None: the task's.

    Returns:
      `(token_ids, padding_mask)` as `finalize` gives them.
    """

    def next(prompt, cache, index):
        batch_size = ops.shape(prompt)[0]
        token = ops.slice(prompt, [0, index - 1], [batch_size, 1])
        logits, hidden_states, cache = step(token, cache, index - 1)
        return logits[:, 0], hidden_states[:, 0], cache

    sampler = task.sampler if sampler is None else sampler
    token_ids = sampler(
        next=next,
        prompt=token_ids,
        cache=cache,
        index=first_generated_index(padding_mask),
        mask=padding_mask,
        stop_token_ids=stop_token_ids,
        hidden_states=hidden_states,
        model=task,
    )
    stop = None if stop_token_ids is None else tuple(int(i) for i in stop_token_ids)
    return finalize(token_ids, padding_mask, stop, task.backbone.pad_token_id)
