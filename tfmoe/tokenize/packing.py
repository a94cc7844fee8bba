"""Sequence packing: start/end tokens, truncation, padding, padding mask.

Built on keras-hub's `StartEndPacker`. Its one trap (an already padded dense
input gets the end token after the pads) is avoided by dropping trailing pad ids
from dense inputs first, so the dense output of `WordpieceTokenizer` with
`sequence_length` set can be packed too.
"""

import keras
import keras_hub
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfmoe")
class SequencePacker(keras.layers.Layer):
    """Token ids -> `{"token_ids", "padding_mask"}` of fixed length.

    `[start_id] + ids[:room] + [end_id]`, padded with `pad_id` on the right; `room`
    leaves space for the start/end ids, so the end id survives truncation.

    Args:
      sequence_length: output length (int >= 1 plus the start/end tokens).
      start_id: id put first (e.g. `tokenizer.cls_token_id`), or None.
      end_id: id put last (e.g. `tokenizer.sep_token_id`), or None.
      pad_id: id of the padding.

    Call:
      `token_ids`: int RaggedTensor `[batch, (tokens)]`, a dense `[batch, tokens]`
      (trailing `pad_id`s are taken as padding), or one sequence `[tokens]`.
      Returns a dict: `token_ids` int32 `[batch, sequence_length]` and
      `padding_mask` bool `[batch, sequence_length]` (True on real tokens, start
      and end included); without the batch dim for a single sequence.
    """

    def __init__(self, sequence_length, start_id=None, end_id=None, pad_id=0, **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        reserved = (start_id is not None) + (end_id is not None)
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length <= reserved:
            raise ValueError(
                f"`sequence_length` must be an int > {reserved} (room for the start/end ids), got {sequence_length!r}"
            )
        for name, value in (("start_id", start_id), ("end_id", end_id), ("pad_id", pad_id)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"`{name}` must be a non-negative int or None, got {value!r}")
        if pad_id is None:
            raise ValueError("`pad_id` must be a non-negative int, got None")
        self.sequence_length = sequence_length
        self.start_id = start_id
        self.end_id = end_id
        self.pad_id = pad_id
        self._packer = keras_hub.layers.StartEndPacker(
            sequence_length=sequence_length,
            start_value=start_id,
            end_value=end_id,
            pad_value=pad_id,
            return_padding_mask=True,
            _allow_python_workflow=False,
        )
        self.built = True

    @classmethod
    def from_tokenizer(cls, tokenizer, sequence_length, add_start=True, add_end=True, **kwargs):
        """A packer using a `WordpieceTokenizer`'s `[CLS]`, `[SEP]` and `[PAD]` ids."""
        start_id = tokenizer.cls_token_id if add_start else None
        end_id = tokenizer.sep_token_id if add_end else None
        needed = {"[PAD]": tokenizer.pad_token_id}
        if add_start:
            needed["[CLS]"] = start_id
        if add_end:
            needed["[SEP]"] = end_id
        missing = [token for token, token_id in needed.items() if token_id is None]
        if missing:
            raise ValueError(f"the tokenizer's vocabulary has no {' '.join(missing)} token")
        return cls(sequence_length, start_id=start_id, end_id=end_id, pad_id=tokenizer.pad_token_id, **kwargs)

    def call(self, token_ids):
        if not isinstance(token_ids, tf.RaggedTensor):
            token_ids = tf.convert_to_tensor(token_ids)
            if token_ids.shape.rank == 2:
                token_ids = tf.RaggedTensor.from_tensor(token_ids, padding=tf.cast(self.pad_id, token_ids.dtype))
        if not token_ids.dtype.is_integer:
            raise TypeError(f"`token_ids` must be integer ids, got dtype {token_ids.dtype.name}")
        if token_ids.shape.rank not in (1, 2):
            raise ValueError(f"`token_ids` must be [batch, (tokens)] or [tokens], got shape {token_ids.shape}")
        packed, mask = self._packer(tf.cast(token_ids, tf.int32))
        return {"token_ids": packed, "padding_mask": mask}

    def get_config(self):
        config = super().get_config()
        config.update(
            sequence_length=self.sequence_length, start_id=self.start_id, end_id=self.end_id, pad_id=self.pad_id
        )
        return config
