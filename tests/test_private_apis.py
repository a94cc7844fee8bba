"""The private Keras / tf_text APIs of `tfmoe.private_apis` exist in the installed releases,
and those releases are inside the ranges `setup.cfg` pins."""

import configparser
import importlib.metadata
import os

import keras
import pytest
from packaging.requirements import Requirement

from tfmoe.private_apis import sublayers

SETUP_CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.cfg")


def _install_requires():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config["options"]["install_requires"].splitlines()
    return {
        r.name: r
        for r in (
            Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")
        )
    }


@pytest.mark.parametrize("package", ["keras", "keras-hub", "tensorflow-text"])
def test_packages_with_private_apis_are_pinned_and_installed_inside_the_pin(package):
    requirement = _install_requires()[package]
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
        f"{package} is used through private APIs: setup.cfg must give it an upper bound"
    )
    installed = importlib.metadata.version(package)
    assert requirement.specifier.contains(installed, prereleases=True), (package, installed)


def test_the_private_apis_exist():
    from tensorflow_text.python.ops.sentencepiece_tokenizer import gen_sentencepiece_tokenizer

    assert callable(gen_sentencepiece_tokenizer.sentencepiece_op)
    assert callable(gen_sentencepiece_tokenizer.sentencepiece_tokenize_op)
    assert callable(getattr(keras.Model, "_maybe_symbolic_build", None))


def test_sublayers_reaches_nested_layers():
    inner = keras.Sequential(
        [keras.layers.Dense(2, name="a"), keras.layers.Dense(2, name="b")], name="inner"
    )
    outer = keras.Sequential([inner, keras.layers.Dense(1, name="c")], name="outer")
    assert sorted(layer.name for layer in sublayers(outer)) == ["a", "b", "c", "inner"]
    assert sorted(layer.name for layer in sublayers(outer, recursive=False)) == ["c", "inner"]
    assert [layer.name for layer in sublayers(outer, include_self=True)][0] == "outer"
