"""tf.data pipelines and the bundled default corpus.

Sources (raw documents, scalar `tf.string`): `text_dataset("default" |
"tfds:NAME[/CONFIG]" | path)`; the supersense classification task:
`wordnet_supersense_splits()`. Task pipelines (tokenization inside the graph,
static shapes, shuffle/cache/prefetch; keras-hub input conventions):

- `span_corruption_dataset`: T5 span corruption for the encoder-decoder.
- `causal_lm_dataset`: packed next-token prediction for the decoder-only LM.
- `classification_dataset`: `(text, label)` for the classifier.

Importing this package registers the TFDS builder `tfmoe_default_corpus`.
"""

from tfmoe.data.causal_lm import causal_lm_dataset
from tfmoe.data.classification import classification_dataset
from tfmoe.data.corpus import (
    DEFAULT_CORPUS_DIR,
    JARGON_FILE,
    WORDNET_SUBSET_FILE,
    jargon_documents,
    wordnet_glosses_file,
)
from tfmoe.data.sources import text_dataset, text_file_dataset, tfds_text_dataset, tsv_dataset
from tfmoe.data.span_corruption import (
    noise_span_counts,
    random_spans_noise_mask,
    span_corrupt,
    span_corruption_dataset,
    span_corruption_lengths,
)
from tfmoe.data.tfds_builder import TfmoeDefaultCorpus
from tfmoe.data.wordnet import SUPERSENSES, wordnet_examples, wordnet_supersense_splits

__all__ = [
    "DEFAULT_CORPUS_DIR",
    "JARGON_FILE",
    "SUPERSENSES",
    "TfmoeDefaultCorpus",
    "WORDNET_SUBSET_FILE",
    "causal_lm_dataset",
    "classification_dataset",
    "jargon_documents",
    "noise_span_counts",
    "random_spans_noise_mask",
    "span_corrupt",
    "span_corruption_dataset",
    "span_corruption_lengths",
    "text_dataset",
    "text_file_dataset",
    "tfds_text_dataset",
    "tsv_dataset",
    "wordnet_examples",
    "wordnet_glosses_file",
    "wordnet_supersense_splits",
]
