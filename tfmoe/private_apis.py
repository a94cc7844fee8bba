"""The private Keras and TensorFlow Text APIs tfmoe uses, where no public one does the job.

- `sublayers`: Keras 3 has no public walk over a layer's nested sublayers
  (`Model.layers` lists only a functional model's own layers), so this wraps
  `Layer._flatten_layers`.
- tf_text's generated `gen_sentencepiece_tokenizer` ops, imported by
  `tfmoe/tokenize/sentencepiece_tokenizer.py`: tf_text's `SentencepieceTokenizer` creates
  its model resource without a shared name, and `keras.utils.clear_session()` destroys
  it; the generated ops let `tfmoe.tokenize.SentencePieceTokenizer` name it.
- `tfmoe.distribute.keras_fixes.DistributedBuildMixin` overrides Keras' trainer method
  `_maybe_symbolic_build` (a Keras bug under `tf.distribute`; see that module).

`setup.cfg` pins Keras, keras-hub and tensorflow-text to the release ranges these were
checked on; `tests/test_private_apis.py` fails when an installed version leaves a pin or
a pinned release drops one of them.
"""


def sublayers(layer, include_self=False, recursive=True):
    """Every sublayer of `layer`, each once (`layer` itself first with `include_self`).

    Args:
      layer: a `keras.layers.Layer` (models included).
      include_self: list `layer` too.
      recursive: also the sublayers' sublayers (False: direct children only).
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))
