"""TFDS builder for the bundled default corpus, so `tfds.load` works on it offline.

Importing this module (done by `import tfmoe.data`) registers
`tfmoe_default_corpus`:

    import tfmoe.data, tensorflow_datasets as tfds
    ds = tfds.load("tfmoe_default_corpus", split="train", data_dir=tmp)               # config "text"
    ds = tfds.load("tfmoe_default_corpus/supersenses", split="test", data_dir=tmp, as_supervised=True)

It is built from the files inside the package (nothing is downloaded):

- config `text` (default): `{"text"}`, the Jargon File documents; splits
  train / validation (`corpus.jargon_documents`).
- config `supersenses`: `{"text", "label", "synset"}`, the bundled WordNet
  gloss subset with its 45 supersense labels; splits train / validation /
  test (`wordnet.wordnet_examples`); supervised keys `("text", "label")`.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from tfmoe.data import corpus, wordnet

_CITATION = """@article{miller1995wordnet,
  title={WordNet: a lexical database for English},
  author={Miller, George A.},
  journal={Communications of the ACM}, volume={38}, number={11}, pages={39--41}, year={1995}
}"""


class TfmoeDefaultCorpus(tfds.core.GeneratorBasedBuilder):
    """The tfmoe bundled corpus: Jargon File 4.4.7 text and WordNet 3.0 supersense glosses."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Jargon File 4.4.7 documents; WordNet 3.0 gloss subset (23,293 synsets)."
    }
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(
            name="text", description="Jargon File 4.4.7 documents (public domain)."
        ),
        tfds.core.BuilderConfig(
            name="supersenses",
            description="WordNet 3.0 glosses labelled with their 45 supersenses (WordNet 3.0 license).",
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        if self.builder_config.name == "text":
            features = tfds.features.FeaturesDict({"text": tfds.features.Text()})
            supervised_keys = None
        else:
            features = tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=list(wordnet.SUPERSENSES)),
                    "synset": tfds.features.Text(),
                }
            )
            supervised_keys = ("text", "label")
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=features,
            supervised_keys=supervised_keys,
            homepage="http://www.catb.org/jargon/ and https://wordnet.princeton.edu/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is in the package
        splits = (
            corpus.JARGON_SPLITS if self.builder_config.name == "text" else wordnet.WORDNET_SPLITS
        )
        return {split: self._generate_examples(split) for split in splits}

    def _generate_examples(self, split):
        if self.builder_config.name == "text":
            for index, document in enumerate(corpus.jargon_documents(split)):
                yield index, {"text": document}
        else:
            for synset, text, label in wordnet.wordnet_examples(split, corpus.WORDNET_SUBSET_FILE):
                yield synset, {"text": text, "label": label, "synset": synset}
