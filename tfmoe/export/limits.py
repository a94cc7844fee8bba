"""Request limits of the serving signatures: a row cap and fixed-size row chunks.

A signature first checks the number of strings of a request against `max_batch_rows`
(an `InvalidArgument` error above it, before any work), then runs its per-row work
(tokenization, model, post-processing) over consecutive chunks of at most
`chunk_rows` rows, one chunk at a time. Peak memory is then bounded by one chunk
(e.g. the float32 `[chunk_rows, seq, vocab]` logits of `score`), not by the request;
only the input strings and the outputs scale with the request.
"""

import tensorflow as tf


def too_many_rows_message(max_batch_rows):
    """The error message of a request with more than `max_batch_rows` strings."""
    return (
        f"Request has more than max_batch_rows={max_batch_rows} strings; split it into "
        f"requests of at most {max_batch_rows} (export option `max_batch_rows`)."
    )


def check_rows(max_batch_rows, *row_tensors):
    """Returns `row_tensors` (all `[rows, ...]`) once their row counts are checked.

    Raises (when the graph runs) `InvalidArgumentError` if the tensors differ in rows or
    have more than `max_batch_rows` rows; the returned tensors depend on the check, so
    nothing downstream runs for a refused request.
    """
    rows = tf.shape(row_tensors[0])[0]
    checks = [
        tf.debugging.assert_less_equal(
            rows,
            tf.constant(max_batch_rows, tf.int32),
            message=too_many_rows_message(max_batch_rows),
            summarize=1,
        )
    ]
    for other in row_tensors[1:]:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(other)[0],
                rows,
                summarize=1,
                message="Every input of the request must have the same number of strings.",
            )
        )
    with tf.control_dependencies(checks):
        return tuple(tf.identity(x) for x in row_tensors)


def map_row_chunks(fn, row_tensors, chunk_rows):
    """Runs `fn` on consecutive chunks of at most `chunk_rows` rows, one chunk at a time.

    Every chunk holds whole rows, in request order, and only real rows (the last chunk
    is shorter, not padded): a request of up to `chunk_rows` rows is one call of `fn` on
    the whole request. Chunks run sequentially (`parallel_iterations=1`), so at most one
    chunk's intermediates are alive at once.

    Args:
      fn: `(*slices) -> {name: tensor [n, ...]}`; `slices` are the `[n, ...]` rows of
        one chunk of each of `row_tensors` (`n <= chunk_rows`). Every call must give
        the same names, dtypes and trailing dimensions.
      row_tensors: sequence of tensors `[rows, ...]` with the same number of rows.
      chunk_rows: static int, rows per chunk.

    Returns:
      `{name: tensor [rows, ...]}`: the outputs of `fn`, concatenated in row order.
    """
    rows = tf.shape(row_tensors[0])[0]
    # ceil(rows / chunk_rows), and one (empty) chunk for an empty request.
    num_chunks = tf.maximum(1, (rows + chunk_rows - 1) // chunk_rows)
    chunk_specs = [tf.TensorSpec([None, *x.shape[1:]], x.dtype) for x in row_tensors]
    # Traced once, here, for the output names, dtypes and shapes (TensorArrays need them
    # before the loop); the loop body is then its only call site, so the graph holds one
    # copy of the chunk's work (tokenizer, model, ...).
    chunk_fn = tf.function(fn, input_signature=chunk_specs, autograph=False)
    outputs = chunk_fn.get_concrete_function().structured_outputs
    arrays = {
        name: tf.TensorArray(
            value.dtype, size=num_chunks, infer_shape=False, element_shape=value.shape
        )
        for name, value in outputs.items()
    }

    def body(index, arrays):
        start = index * chunk_rows
        out = chunk_fn(*[x[start : start + chunk_rows] for x in row_tensors])
        return index + 1, {name: arrays[name].write(index, out[name]) for name in arrays}

    _, arrays = tf.while_loop(
        lambda index, _: index < num_chunks, body, (tf.constant(0), arrays), parallel_iterations=1
    )
    return {name: array.concat() for name, array in arrays.items()}
