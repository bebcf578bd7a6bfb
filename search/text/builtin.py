"""``wordnet-topics``: WordNet noun definitions labelled by topic, from the local database.

WordNet files every noun synset under one lexicographer file (``noun.animal``, ``noun.food``...);
the definition of a synset (its gloss up to the first usage example) is a short text whose
topic is that file. Debian ships the database as ``wordnet-base``, so the set needs no network.
Texts are drawn per class by a hash of the synset's first lemma (the same texts on every
machine), and a fixed fifth of each class is tagged ``test``.
"""

from __future__ import annotations

import hashlib
from typing import get_args

import numpy as np

from ops.lexicon import WordNet
from search.datasets.dataset import SPLIT_CODES
from search.datasets.spec import WordNetTopic, WordNetTopicsSpec
from search.text.dataset import TextDataset

#: WordNet's lexicographer file number of every topic.
TOPIC_FILES: dict[str, int] = dict(
    zip(get_args(WordNetTopic), (4, 5, 6, 8, 9, 10, 13, 15, 18, 20, 26, 27), strict=True)
)
#: One text in this many of each class is a test text.
TEST_EVERY = 5


def _definition(gloss: str) -> str:
    """The gloss without its quoted usage examples."""
    return gloss.split('"', 1)[0].strip().rstrip(";").strip()


def _rank(lemma: str) -> str:
    return hashlib.sha256(lemma.encode()).hexdigest()


def load_wordnet_topics(spec: WordNetTopicsSpec, lexicon: WordNet | None = None) -> TextDataset:
    """Build the dataset described by ``spec``.

    Raises:
        LexiconMissingError: when the WordNet database is missing.
    """
    topics: list[str] = list(spec.topics) if spec.topics is not None else list(TOPIC_FILES)
    wordnet = lexicon if lexicon is not None else WordNet()
    by_file: dict[int, list[tuple[str, str]]] = {TOPIC_FILES[t]: [] for t in topics}
    for number, lemmas, gloss in wordnet.synsets("noun"):
        text = _definition(gloss)
        if number in by_file and len(text.split()) >= 3:
            by_file[number].append((_rank(lemmas[0]), text))
    texts: list[str] = []
    labels: list[int] = []
    splits: list[int] = []
    for label, topic in enumerate(topics):
        chosen = sorted(by_file[TOPIC_FILES[topic]])[: spec.per_class]
        for rank, (_, text) in enumerate(chosen):
            texts.append(text)
            labels.append(label)
            test = rank % TEST_EVERY == TEST_EVERY - 1
            splits.append(SPLIT_CODES["test" if test else "train"])
    return TextDataset(
        texts=texts,
        labels=np.array(labels, dtype=np.int64),
        classes=topics,
        splits=np.array(splits, dtype=np.int64),
    )
