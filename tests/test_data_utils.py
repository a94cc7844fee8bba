"""Helpers for the tfmoe.data tests (no tests here): a small in-graph test tokenizer."""

import functools
import string

import tensorflow as tf
import tensorflow_text as tf_text

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NUM_SENTINELS = 64
WORDS = "the a of to and in is that for it as with on hacker file program jargon word".split()


class ToyTokenizer:
    """Lower-cased FastWordpiece over a tiny vocabulary (letters, digits, punctuation, a few words).

    Has the special-token attributes of `tfmoe.tokenize.WordpieceTokenizer`.
    """

    pad_token_id, unk_token_id, cls_token_id, sep_token_id, mask_token_id = range(5)

    def __init__(self):
        self.sentinel_token_ids = list(range(len(SPECIALS), len(SPECIALS) + NUM_SENTINELS))
        chars = list(string.ascii_lowercase + string.digits + string.punctuation)
        tokens = (
            SPECIALS
            + [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
            + chars
            + ["##" + c for c in chars]
        )
        self.vocabulary = list(dict.fromkeys(tokens + WORDS))
        self._tokenizer = tf_text.FastWordpieceTokenizer(
            self.vocabulary,
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            no_pretokenization=False,
        )

    def vocabulary_size(self):
        return len(self.vocabulary)

    def __call__(self, texts):
        return self._tokenizer.tokenize(tf_text.case_fold_utf8(texts))


@functools.lru_cache(maxsize=None)
def toy_tokenizer():
    return ToyTokenizer()


def plain_tokenizer():
    """A bare callable (no special-token attributes): the same ids as `toy_tokenizer()`."""
    tokenizer = toy_tokenizer()
    return lambda texts: tokenizer(texts)


def texts_dataset(texts):
    return tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))


def sample_texts(n=200, seed=0):
    """`n` deterministic pseudo-random documents of 3-60 words."""
    import random

    rng = random.Random(seed)
    pool = WORDS + ["zork", "kludge", "foo", "bar", "42", "hello, world!"]
    return [" ".join(rng.choice(pool) for _ in range(rng.randint(3, 60))) for _ in range(n)]
