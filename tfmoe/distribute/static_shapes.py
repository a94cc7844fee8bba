"""Static-shape checks: what a TPU (and XLA without recompiles) needs from the input pipeline."""

from __future__ import annotations

import tensorflow as tf


def dynamic_dimensions(element_spec) -> list[str]:
    """Paths of the components of `element_spec` whose shape is not fully known.

    Returns entries like `"[0]['token_ids']: (None, 128)"`; empty when all shapes are static.
    """
    found = []
    for path, spec in _flatten_with_paths(element_spec):
        shape = getattr(spec, "shape", None)
        if isinstance(spec, (tf.RaggedTensorSpec, tf.SparseTensorSpec)):
            found.append(f"{path}: {type(spec).__name__} {shape}")
        elif shape is not None and not shape.is_fully_defined():
            found.append(
                f"{path}: {tuple(shape.as_list()) if shape.rank is not None else 'unknown rank'}"
            )
    return found


def assert_static_shapes(dataset: tf.data.Dataset, name: str = "dataset") -> tf.data.Dataset:
    """Returns `dataset` unchanged, or raises `ValueError` listing every dynamic dimension.

    Batch with `drop_remainder=True` and pad to a fixed sequence length to fix them
    (the `tfmoe.data` pipelines do both).
    """
    dynamic = dynamic_dimensions(dataset.element_spec)
    if dynamic:
        raise ValueError(
            f"`{name}` has dynamic shapes, which TPUs cannot compile: {'; '.join(dynamic)}. "
            "Batch with drop_remainder=True and pad every sequence to a fixed length."
        )
    return dataset


def _flatten_with_paths(structure, prefix=""):
    if isinstance(structure, dict):
        for key in sorted(structure):
            yield from _flatten_with_paths(structure[key], f"{prefix}[{key!r}]")
    elif isinstance(structure, (tuple, list)):
        for i, item in enumerate(structure):
            yield from _flatten_with_paths(item, f"{prefix}[{i}]")
    else:
        yield prefix or "element", structure


def dynamic_hlo_shapes(function, *args) -> list[str]:
    """HLO instructions with dynamic dimensions when `function(*args)` is compiled by XLA.

    `function` must be a `tf.function(jit_compile=True)`. XLA prints bounded dynamic
    dimensions as `<=N` (e.g. after `tf.boolean_mask` or one-argument `tf.where`); a TPU
    step must have none. Returns the offending HLO lines (empty when fully static).
    """
    hlo = function.experimental_get_compiler_ir(*args)(stage="hlo")
    return [line.strip() for line in hlo.splitlines() if "[<=" in line or ",<=" in line]
