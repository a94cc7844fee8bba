"""Lazy NumPy reader of a Hugging Face safetensors checkpoint directory (no torch).

Handles a single `model.safetensors` and a sharded checkpoint described by
`model.safetensors.index.json` (`{"weight_map": {tensor name: shard file}}`).
bfloat16 tensors are returned as float32: importing `ml_dtypes` (a TensorFlow
dependency) gives NumPy the bfloat16 type that safetensors reads them into.
"""

import contextlib
import json
import os

import ml_dtypes  # noqa: F401  (registers NumPy's "bfloat16" dtype for safetensors)
import numpy as np

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class SafetensorsCheckpoint:
    """Tensor names -> NumPy arrays of a safetensors checkpoint directory.

    Tensors are read one at a time on `get`, so a checkpoint never has to fit in
    memory as a whole.

    Args:
      directory: folder holding `model.safetensors` or `model.safetensors.index.json`
        and its shards.

    Raises:
      FileNotFoundError: when the folder does not exist or holds neither file (e.g.
        only a PyTorch `pytorch_model.bin`, which needs torch to read).
      ValueError: when the index is not valid JSON or names a shard that does not
        exist, or a safetensors file is not readable (empty, truncated, bad header).
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        index_path = os.path.join(self.directory, INDEX_FILE)
        single_path = os.path.join(self.directory, SINGLE_FILE)
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(f"No such directory: {self.directory!r}.")
        if os.path.exists(index_path):
            self._files = {
                name: os.path.join(self.directory, shard)
                for name, shard in _read_weight_map(index_path).items()
            }
            missing = sorted({p for p in self._files.values() if not os.path.exists(p)})
            if missing:
                raise ValueError(f"{index_path} names missing shard file(s): {missing}.")
            for shard in sorted(set(self._files.values())):
                _tensor_names(shard)  # fails fast on a truncated or empty shard
        elif os.path.exists(single_path):
            self._files = {name: single_path for name in _tensor_names(single_path)}
        else:
            present = (
                sorted(os.listdir(self.directory))
                if os.path.isdir(self.directory)
                else "no such directory"
            )
            raise FileNotFoundError(
                f"No {SINGLE_FILE} or {INDEX_FILE} in {self.directory!r} (found: {present}). "
                "Save the model with `save_pretrained(..., safe_serialization=True)`."
            )

    def keys(self):
        """All tensor names, sorted."""
        return sorted(self._files)

    def __contains__(self, name):
        return name in self._files

    def get(self, name):
        """The tensor `name` as a NumPy array (bfloat16 comes back as float32)."""
        from safetensors import safe_open

        path = self._files[name]
        with _unreadable_as_value_error(path), safe_open(path, framework="numpy") as f:
            tensor = f.get_tensor(name)
        return tensor.astype(np.float32) if tensor.dtype.name == "bfloat16" else tensor


def _read_weight_map(index_path):
    """The `weight_map` of a sharded checkpoint's index file."""
    try:
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{index_path} is not a safetensors index (JSON with a "
            f"'weight_map' object): {type(error).__name__}: {error}"
        ) from None
    if not isinstance(weight_map, dict):
        raise ValueError(f"{index_path}: 'weight_map' must map tensor names to shard files.")
    return weight_map


def _tensor_names(path):
    from safetensors import safe_open

    with _unreadable_as_value_error(path), safe_open(path, framework="numpy") as f:
        return list(f.keys())


@contextlib.contextmanager
def _unreadable_as_value_error(path):
    """Turns the safetensors library's errors about file `path` into one-line `ValueError`s."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as error:
        reason = "empty file" if os.path.getsize(path) == 0 else str(error).strip()
        raise ValueError(
            f"{path} is not a readable safetensors file ({reason}); "
            "it may be truncated: save or download it again."
        ) from None
