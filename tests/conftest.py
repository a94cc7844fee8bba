"""Shared pytest set-up.

- Keras on the TensorFlow backend, quiet TF logs.
- Two logical CPU devices, so MirroredStrategy tests run on a CPU-only machine.
  This must happen before TensorFlow initialises its devices, hence at import time.
- The global Keras dtype policy is reset after every test (mixed-precision tests
  must not leak into the others).
"""

import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )
except RuntimeError:  # devices already initialised by another import
    pass

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
BERT_VOCAB = TEST_DATA / "bert_uncased_vocab.txt"
BERT_TOKENIZER_JSON = TEST_DATA / "bert_uncased_tokenizer.json"


@pytest.fixture(autouse=True)
def _reset_keras_state():
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.clear_session(free_memory=False)


@pytest.fixture(scope="session")
def mirrored_cpus():
    """One `MirroredStrategy` over the two logical CPUs, shared by the whole session.

    Collective instance keys are counted per strategy object: a second strategy in the
    same process reuses the first one's keys, and its all-reduces then fail with
    "Shape mismatch in the collective instance" (and abort the collective executor).
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "two logical CPUs are configured above"
    return tf.distribute.MirroredStrategy(devices)


@pytest.fixture
def load_script():
    """Imports an `experiments/*.py` script as a module; its absl flags are removed afterwards.

    The scripts define flags on the global `absl.flags.FLAGS` at import, and several define
    the same names (`--dense`, `--steps`, ...): without the clean-up, importing a second
    script in the same session raises `DuplicateFlagError`.
    """
    import importlib.util

    from absl import flags

    before = set(flags.FLAGS)

    def load(name):
        path = REPO_ROOT / "experiments" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_script", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)


@pytest.fixture(scope="session")
def tiny_spiece_model(tmp_path_factory):
    """Path of a tiny T5-style unigram `spiece.model` (150 pieces; `<pad>` 0, `</s>` 1,
    `<unk>` 2), trained in about a second on an eighth of the bundled WordNet glosses."""
    import gzip
    import io

    import sentencepiece as spm

    from tfmoe.data import corpus

    with gzip.open(corpus.WORDNET_SUBSET_FILE, "rt", encoding="utf-8") as file:
        glosses = [line.rstrip("\n").split("\t")[-1] for line in file][1::8]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(glosses),
        model_writer=model,
        model_type="unigram",
        vocab_size=150,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        shrinking_factor=0.5,
        num_threads=1,
        minloglevel=2,
    )
    path = tmp_path_factory.mktemp("t5_spiece") / "spiece.model"
    path.write_bytes(model.getvalue())
    return path
