"""Lazy NumPy reader of a Hugging Face safetensors checkpoint directory (no torch).

Handles a single `model.safetensors` and a sharded checkpoint described by
`model.safetensors.index.json` (`{"weight_map": {tensor name: shard file}}`).
bfloat16 tensors (which NumPy lacks) are read through `ml_dtypes`, a TensorFlow
dependency, and returned as float32.
"""

import json
import os

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
      FileNotFoundError: when the folder holds neither file (e.g. only a PyTorch
        `pytorch_model.bin`, which needs torch to read).
      ValueError: when the index names a shard that does not exist.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        index_path = os.path.join(self.directory, INDEX_FILE)
        single_path = os.path.join(self.directory, SINGLE_FILE)
        if os.path.exists(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            self._files = {name: os.path.join(self.directory, shard)
                           for name, shard in weight_map.items()}
            missing = sorted({p for p in self._files.values() if not os.path.exists(p)})
            if missing:
                raise ValueError(f"{index_path} names missing shard file(s): {missing}.")
        elif os.path.exists(single_path):
            self._files = {name: single_path for name in _tensor_names(single_path)}
        else:
            present = sorted(os.listdir(self.directory)) if os.path.isdir(
                self.directory) else "no such directory"
            raise FileNotFoundError(
                f"No {SINGLE_FILE} or {INDEX_FILE} in {self.directory!r} (found: {present}). "
                "Save the model with `save_pretrained(..., safe_serialization=True)`.")

    def keys(self):
        """All tensor names, sorted."""
        return sorted(self._files)

    def __contains__(self, name):
        return name in self._files

    def get(self, name):
        """The tensor `name` as a NumPy array (bfloat16 comes back as float32)."""
        from safetensors import safe_open

        path = self._files[name]
        with safe_open(path, framework="numpy") as f:
            try:
                tensor = f.get_tensor(name)
            except TypeError:  # "data type 'bfloat16' not understood" without ml_dtypes
                if f.get_slice(name).get_dtype() != "BF16":
                    raise
                tensor = None
        if tensor is None:
            return _read_bfloat16(path, name)
        return tensor.astype(np.float32) if tensor.dtype.name == "bfloat16" else tensor


def _tensor_names(path):
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        return list(f.keys())


def _read_bfloat16(path, name):
    """Reads bfloat16 tensor `name` from the raw safetensors layout: an 8-byte
    little-endian header size, a JSON header with `dtype`, `shape` and
    `data_offsets` (relative to the end of the header), then the data."""
    import ml_dtypes

    with open(path, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        info = json.loads(f.read(header_size))[name]
        begin, end = info["data_offsets"]
        f.seek(8 + header_size + begin)
        data = np.frombuffer(f.read(end - begin), dtype=ml_dtypes.bfloat16)
    return data.reshape(info["shape"]).astype(np.float32)
