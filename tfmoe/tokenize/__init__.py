"""Tokenization: BERT WordPiece on `tf_text.FastWordpieceTokenizer`, vocabulary learning.

- `WordpieceTokenizer`: Keras layer, strings -> int32 ids, exact with the reference
  BERT tokenizer; runs in `tf.data`, `tf.function` and exported SavedModels.
- `normalize_text`: the BERT normaliser alone (graph ops).
- `learn_vocabulary`: WordPiece vocabulary from a `tf.data.Dataset` of text
  (CLI: `python -m tfmoe.tokenize.learn --input FILE --size N --output vocab.txt`).
- `SentencePieceTokenizer`: T5 SentencePiece (`spiece.model`, sentinels `<extra_id_N>`)
  as a Keras layer, exact with the `transformers` T5 tokenizer; graph ops too.

Special tokens: `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`. Span-corruption
sentinels: `[unused0]`, `[unused1]`, ... (T5's `<extra_id_0>`, ...), present in
the BERT vocabularies and reserved by `learn_vocabulary`; their ids are
`WordpieceTokenizer.sentinel_token_ids`. See `tfmoe.tokenize.vocabulary`.
"""

from tfmoe.tokenize.learn import learn_vocabulary
from tfmoe.tokenize.normalization import normalize_text
from tfmoe.tokenize.sentencepiece_tokenizer import SentencePieceTokenizer
from tfmoe.tokenize.vocabulary import default_reserved_tokens, load_vocabulary, sentinel_token
from tfmoe.tokenize.wordpiece_tokenizer import WordpieceTokenizer

__all__ = [
    "SentencePieceTokenizer",
    "WordpieceTokenizer",
    "default_reserved_tokens",
    "learn_vocabulary",
    "load_vocabulary",
    "normalize_text",
    "sentinel_token",
]
