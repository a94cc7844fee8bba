"""tfmoe: sparse Mixture-of-Experts language models for TensorFlow 2 / Keras 3.

Subpackages (imported lazily, so `import tfmoe` stays cheap):

- `tfmoe.layers`: routers, switch (top-1) and top-2 expert feed-forward layers, losses.
- `tfmoe.tokenize`: FastWordpiece and SentencePiece tokenizer layers, vocabulary learning.
- `tfmoe.models`: Switch encoder-decoder, decoder-only LM, encoder classifier, presets.
- `tfmoe.data`: tf.data pipelines and the bundled default corpus.
- `tfmoe.export`: SavedModel export bundling tokenizer and model.
- `tfmoe.convert`: Hugging Face Switch Transformers checkpoint conversion.
- `tfmoe.distribute`: strategies, multi-worker clusters, TPU readiness, expert parallelism.
- `tfmoe.training`: `model.fit` pre-training, callbacks, run-directory backups and resume.
"""

import importlib
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_SUBPACKAGES = (
    "layers",
    "tokenize",
    "models",
    "data",
    "export",
    "convert",
    "distribute",
    "training",
)


def __getattr__(name):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfmoe' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))
