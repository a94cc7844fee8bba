"""The keyword arguments a task's `from_preset(<registry name>)` takes besides the backbone's."""

from tfmoe.models.switch_tokenizer import SwitchTokenizer


def pop_preprocessor(kwargs, preprocessor_class, length_names):
    """Takes `preprocessor=` or `vocabulary=` (+ sequence lengths) out of `kwargs`.

    Args:
      kwargs: a registry-name `from_preset`'s keyword arguments; edited in place: the
        preprocessor options are removed and, with a preprocessor, `vocabulary_size`
        defaults to its tokenizer's.
      preprocessor_class: the task's preprocessor, built as
        `preprocessor_class(SwitchTokenizer(vocabulary), **lengths)`.
      length_names: the preprocessor's sequence-length arguments.

    Returns:
      The preprocessor, or None when neither option is given.
    """
    preprocessor = kwargs.pop("preprocessor", None)
    vocabulary = kwargs.pop("vocabulary", None)
    lengths = {name: kwargs.pop(name) for name in length_names if name in kwargs}
    if vocabulary is not None:
        if preprocessor is not None:
            raise ValueError("Pass `preprocessor` or `vocabulary`, not both.")
        preprocessor = preprocessor_class(SwitchTokenizer(vocabulary), **lengths)
    elif lengths:
        names = " and ".join(f"`{name}`" for name in sorted(lengths))
        raise ValueError(
            f"{names} need{'s' if len(lengths) == 1 else ''} `vocabulary` "
            "(sequence lengths size the preprocessor)."
        )
    if preprocessor is not None:
        kwargs.setdefault("vocabulary_size", preprocessor.tokenizer.vocabulary_size())
    return preprocessor


def pop_options(kwargs, names):
    """`{name: value}` of the `names` present in `kwargs`, removed from it."""
    return {name: kwargs.pop(name) for name in names if name in kwargs}
