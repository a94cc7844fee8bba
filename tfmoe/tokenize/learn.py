"""Learning a WordPiece vocabulary, as a function and as a command line tool.

    python -m tfmoe.tokenize.learn --input corpus.txt[.gz] --size 8000 --output vocab.txt

The text is normalised and split into words exactly as `WordpieceTokenizer`
does (`normalize_text`, `split_words`), then `tensorflow_text`'s
`bert_vocab_from_dataset` learns the pieces. The result starts with the
reserved tokens (`[PAD]`=0, `[UNK]`=1, `[CLS]`=2, `[SEP]`=3, `[MASK]`=4,
`[unused0]`.. sentinels by default), then every character and its `##` form,
then the learned pieces by frequency.
"""

import argparse
import sys

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bert_vocab

from tfmoe.tokenize import vocabulary as vocab_lib
from tfmoe.tokenize.normalization import normalize_text
from tfmoe.tokenize.pretokenization import split_words

# The tf_text default (lower_thresh=10) never keeps a piece seen fewer than 10
# times, which leaves small corpora with tiny vocabularies.
DEFAULT_LEARN_PARAMS = {"lower_thresh": 1}
_BATCH_SIZE = 1024


@tf.autograph.experimental.do_not_convert
def _words_as_text(text, lowercase, strip_accents):
    """`[n]` raw text -> `[n]` normalised words joined by single spaces."""
    words = split_words(normalize_text(text, lowercase=lowercase, strip_accents=strip_accents))
    return tf.strings.reduce_join(words, axis=1, separator=" ")


def _as_text_dataset(text_dataset):
    if isinstance(text_dataset, tf.data.Dataset):
        spec = text_dataset.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
            raise TypeError(f"`text_dataset` must yield tf.string tensors, got element_spec {spec}")
        if spec.shape.rank == 0:
            return text_dataset.batch(_BATCH_SIZE)
        return text_dataset.map(lambda t: tf.reshape(t, [-1]))
    if isinstance(text_dataset, (str, bytes)):
        raise TypeError(
            "`text_dataset` must be a tf.data.Dataset or a list of strings, got a single string"
        )
    try:
        texts = tf.constant(list(text_dataset), dtype=tf.string)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`text_dataset` must be a tf.data.Dataset or a list of strings: {error}"
        ) from None
    return tf.data.Dataset.from_tensor_slices(texts).batch(_BATCH_SIZE)


def _fit_to_size(tokens, vocabulary_size, reserved_tokens):
    """Trims `tokens` to `vocabulary_size`, never dropping reserved or single-character tokens."""
    if len(tokens) <= vocabulary_size:
        return tokens
    characters = {t for t in tokens if len(t) == 1}
    essential = (
        set(reserved_tokens) | characters | {vocab_lib.SUFFIX_INDICATOR + c for c in characters}
    )
    room = vocabulary_size - sum(t in essential for t in tokens)
    if room < 0:
        raise ValueError(
            f"`vocabulary_size`={vocabulary_size} cannot hold the {len(reserved_tokens)} reserved tokens and "
            f"{len(characters)} characters (each also as ##c); raise it or lower learn_params['max_unique_chars']"
        )
    kept = []
    for token in tokens:
        if token in essential:
            kept.append(token)
        elif room > 0:
            kept.append(token)
            room -= 1
    return kept


def learn_vocabulary(
    text_dataset,
    vocabulary_size,
    reserved_tokens=None,
    *,
    lowercase=True,
    strip_accents=True,
    learn_params=None,
):
    """Learns a WordPiece vocabulary that `WordpieceTokenizer` (FastWordpiece) accepts.

    Args:
      text_dataset: `tf.data.Dataset` of `tf.string` (scalars or batches), or a
        list of Python strings.
      vocabulary_size: maximum number of tokens, reserved ones included.
      reserved_tokens: tokens put first, in order; must contain `[UNK]`. Default:
        `default_reserved_tokens()` (BERT specials + 100 `[unusedN]` sentinels).
      lowercase, strip_accents: the normalisation the tokenizer will use.
      learn_params: extra arguments of
        `tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib.learn`
        (e.g. `max_unique_chars`, `num_iterations`); merged over `DEFAULT_LEARN_PARAMS`.

    Returns:
      list[str], at most `vocabulary_size` tokens.
    """
    if reserved_tokens is None:
        reserved_tokens = vocab_lib.default_reserved_tokens()
    reserved_tokens = list(reserved_tokens)
    if vocab_lib.UNKNOWN_TOKEN not in reserved_tokens:
        raise ValueError(
            f"`reserved_tokens` must contain {vocab_lib.UNKNOWN_TOKEN!r}, got {reserved_tokens[:8]}..."
        )
    if len(set(reserved_tokens)) != len(reserved_tokens):
        raise ValueError("`reserved_tokens` has duplicates")
    too_small = not isinstance(vocabulary_size, int) or vocabulary_size <= len(reserved_tokens)
    if isinstance(vocabulary_size, bool) or too_small:
        raise ValueError(
            f"`vocabulary_size` must be an int > len(reserved_tokens)={len(reserved_tokens)}, got {vocabulary_size!r}"
        )
    words = _as_text_dataset(text_dataset).map(
        lambda text: _words_as_text(text, lowercase, strip_accents),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    params = dict(DEFAULT_LEARN_PARAMS, **(learn_params or {}))
    try:
        tokens = bert_vocab.bert_vocab_from_dataset(
            words,
            vocab_size=vocabulary_size,
            reserved_tokens=reserved_tokens,
            # The text is already normalised and split: only split on the spaces again.
            bert_tokenizer_params={"lower_case": False},
            learn_params=params,
        )
    except StopIteration:
        raise ValueError("`text_dataset` holds no words") from None
    tokens = _fit_to_size(tokens, vocabulary_size, reserved_tokens)
    # Fail here rather than in the tokenizer if FastWordpiece would refuse it.
    tf_text.FastWordpieceTokenizer(tokens, unknown_token=vocab_lib.UNKNOWN_TOKEN)
    return tokens


def _text_lines(paths):
    datasets = [
        tf.data.TextLineDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
        for path in paths
    ]
    dataset = datasets[0]
    for other in datasets[1:]:
        dataset = dataset.concatenate(other)
    return dataset


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Learn a WordPiece vocabulary (one token per line) from text files."
    )
    parser.add_argument(
        "--input", nargs="+", required=True, help="text files, one example per line (.gz is fine)"
    )
    parser.add_argument(
        "--size", type=int, required=True, help="maximum vocabulary size, reserved tokens included"
    )
    parser.add_argument("--output", required=True, help="vocabulary file to write")
    parser.add_argument("--cased", action="store_true", help="do not lower-case")
    parser.add_argument("--keep-accents", action="store_true", help="do not strip accents")
    parser.add_argument(
        "--num-sentinels",
        type=int,
        default=vocab_lib.DEFAULT_NUM_SENTINEL_TOKENS,
        help="[unusedN] sentinel tokens to reserve",
    )
    args = parser.parse_args(argv)
    for path in args.input:
        if not tf.io.gfile.exists(path):
            parser.error(f"--input file not found: {path}")
    tokens = learn_vocabulary(
        _text_lines(args.input),
        args.size,
        vocab_lib.default_reserved_tokens(args.num_sentinels),
        lowercase=not args.cased,
        strip_accents=not args.keep_accents,
    )
    with tf.io.gfile.GFile(args.output, "w") as f:
        f.write("".join(token + "\n" for token in tokens))
    print(f"wrote {len(tokens)} tokens to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
