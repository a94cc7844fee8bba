"""WordPiece vocabularies: loading, checking, special and sentinel tokens.

Special tokens use the BERT names: `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`.
Sentinel tokens for T5-style span corruption are `[unused0]`, `[unused1]`, ...:
the BERT vocabularies already reserve those slots for such uses (ids 1-99 and
104-998 in `bert-base-uncased`), and `learn_vocabulary` reserves
`DEFAULT_NUM_SENTINEL_TOKENS` of them, so both kinds of vocabulary work unchanged.
The k-th sentinel (T5's `<extra_id_k>`) is `sentinel_token(k)`.
"""

import tensorflow as tf

PAD_TOKEN = "[PAD]"
UNKNOWN_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNKNOWN_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)
SUFFIX_INDICATOR = "##"
DEFAULT_NUM_SENTINEL_TOKENS = 100


def sentinel_token(index):
    """Name of the `index`-th sentinel token (T5's `<extra_id_{index}>`)."""
    return f"[unused{index}]"


def default_reserved_tokens(num_sentinel_tokens=DEFAULT_NUM_SENTINEL_TOKENS):
    """Special tokens, then `num_sentinel_tokens` sentinels: ids 0, 1, 2, ... of a learned vocabulary."""
    return list(SPECIAL_TOKENS) + [sentinel_token(i) for i in range(num_sentinel_tokens)]


def load_vocabulary(vocabulary):
    """Returns the vocabulary as a checked list of tokens.

    Args:
      vocabulary: a sequence of token strings, or the path of a UTF-8 file with
        one token per line (id = line number, from 0); a leading byte order mark
        (as some Windows editors write) is not part of the first token.

    Raises:
      TypeError: `vocabulary` is neither a path nor a sequence of strings.
      ValueError: it is empty, has empty or duplicated tokens, tokens with
        whitespace, or no `[UNK]` (FastWordpiece needs it), or the file is not UTF-8.
    """
    if isinstance(vocabulary, (str, bytes)) or hasattr(vocabulary, "__fspath__"):
        path = vocabulary.decode() if isinstance(vocabulary, bytes) else str(vocabulary)
        tokens = _read_vocabulary_file(path)
    else:
        try:
            tokens = list(vocabulary)
        except TypeError:
            raise TypeError(
                f"`vocabulary` must be a list of tokens or a file path, got {type(vocabulary).__name__}"
            ) from None
        tokens = [t.decode("utf-8") if isinstance(t, bytes) else t for t in tokens]
        bad = [t for t in tokens if not isinstance(t, str)]
        if bad:
            raise TypeError(
                f"`vocabulary` tokens must be strings, got {type(bad[0]).__name__}: {bad[0]!r}"
            )
    if not tokens:
        raise ValueError("`vocabulary` is empty")
    for index, token in enumerate(tokens):
        if token == "" or token.strip() != token or any(c.isspace() for c in token):
            raise ValueError(
                f"`vocabulary` token {index} is empty or contains whitespace: {token!r}"
            )
    if len(set(tokens)) != len(tokens):
        seen = set()
        duplicate = next(t for t in tokens if t in seen or seen.add(t))
        raise ValueError(f"`vocabulary` has duplicated token {duplicate!r}")
    if UNKNOWN_TOKEN not in tokens:
        raise ValueError(f"`vocabulary` must contain the unknown token {UNKNOWN_TOKEN!r}")
    return tokens


def _read_vocabulary_file(path):
    """The lines of vocabulary file `path`, without a UTF-8 byte order mark or trailing empty lines."""
    if not tf.io.gfile.exists(path):
        raise ValueError(f"`vocabulary` file not found: {path!r}")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"`vocabulary` file {path!r} is not UTF-8 text (line {line}: byte "
            f"0x{data[error.start]:02x})"
        ) from None
    tokens = text.splitlines()
    # A final newline is normal; a trailing empty line is not a token.
    while tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def sentinel_token_ids(tokens):
    """Ids of `[unused0]`, `[unused1]`, ... present in `tokens`, up to the first missing one."""
    index = {token: i for i, token in enumerate(tokens)}
    ids = []
    while sentinel_token(len(ids)) in index:
        ids.append(index[sentinel_token(len(ids))])
    return tuple(ids)
