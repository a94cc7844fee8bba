"""keras-hub's preprocessing harness on the tfmoe tokenizer and preprocessors.

`run_preprocessing_layer_test` / `run_preprocessor_test` call each layer directly, in
an unbatched and a batched `tf.data` pipeline, and through serialization, and check
that every path gives the expected arrays.
"""

from keras_hub.src.tests import test_case

from tfmoe.models import (
    SwitchCausalLMPreprocessor,
    SwitchSeq2SeqLMPreprocessor,
    SwitchSeq2SeqTokenizer,
    SwitchTextClassifierPreprocessor,
    SwitchTokenizer,
)

VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + "the quick brown fox jumps over lazy dog a cat sat on mat".split()
    + ["##s", ","]
)
ID = {token: i for i, token in enumerate(VOCAB)}
PAD, CLS, SEP = ID["[PAD]"], ID["[CLS]"], ID["[SEP]"]


def ids(text):
    return [ID[t] for t in text.split()]


class PreprocessingHarnessTest(test_case.TestCase):
    """keras-hub's harness, without `tf.test.TestCase.test_session` (a deprecated
    helper that pytest would collect and skip as "Not a test")."""

    test_session = None

    def run_preprocessor_test(self, cls, init_kwargs, *args, **kwargs):
        # The harness builds a second layer from `self.init_kwargs`.
        self.init_kwargs = init_kwargs
        return super().run_preprocessor_test(cls, init_kwargs, *args, **kwargs)

    def test_tokenizer(self):
        self.run_preprocessing_layer_test(
            cls=SwitchTokenizer,
            init_kwargs={"vocabulary": VOCAB},
            input_data=["the quick brown fox", "a cat sat on the mat"],
            expected_output=[ids("the quick brown fox"), ids("a cat sat on the mat")],
        )

    def test_causal_lm_preprocessor(self):
        # The input position of the end token (its label is padding) is padding too.
        self.run_preprocessor_test(
            cls=SwitchCausalLMPreprocessor,
            init_kwargs={"tokenizer": SwitchTokenizer(VOCAB), "sequence_length": 6},
            input_data=["the quick brown fox"],
            expected_output=(
                {
                    "token_ids": [ids("the quick brown fox") + [PAD, PAD]],
                    "padding_mask": [[True] * 4 + [False] * 2],
                },
                [ids("quick brown fox") + [SEP, PAD, PAD]],
                [[True] * 4 + [False] * 2],
            ),
        )

    def test_text_classifier_preprocessor(self):
        self.run_preprocessor_test(
            cls=SwitchTextClassifierPreprocessor,
            init_kwargs={"tokenizer": SwitchTokenizer(VOCAB), "sequence_length": 6},
            input_data=(["a lazy dog"], [1]),
            expected_output=(
                {
                    "token_ids": [[CLS] + ids("a lazy dog") + [SEP, PAD]],
                    "padding_mask": [[True] * 5 + [False]],
                },
                [1],
            ),
        )

    def test_seq2seq_lm_preprocessor(self):
        self.run_preprocessor_test(
            cls=SwitchSeq2SeqLMPreprocessor,
            init_kwargs={
                "tokenizer": SwitchSeq2SeqTokenizer(VOCAB),
                "encoder_sequence_length": 5,
                "decoder_sequence_length": 5,
            },
            input_data={"encoder_text": ["the quick fox"], "decoder_text": ["a cat"]},
            expected_output=(
                {
                    "encoder_token_ids": [ids("the quick fox") + [SEP, PAD]],
                    "encoder_padding_mask": [[True] * 4 + [False]],
                    "decoder_token_ids": [[PAD] + ids("a cat") + [SEP, PAD]],
                    "decoder_padding_mask": [[True] * 4 + [False]],
                },
                [ids("a cat") + [SEP, PAD, PAD]],
                [[True] * 3 + [False] * 2],
            ),
            token_id_key="decoder_token_ids",
        )
