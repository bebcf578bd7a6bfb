"""``load_text_dataset``: one entry point over every text source."""

from __future__ import annotations

from search.datasets.spec import TextDatasetSpec, TextTableSpec, WordNetTopicsSpec
from search.text.builtin import load_wordnet_topics
from search.text.dataset import DEFAULT_TEXT_LIMITS, TextDataset, TextLimits
from search.text.tables import load_text_table


def load_text_dataset(
    spec: TextDatasetSpec, limits: TextLimits = DEFAULT_TEXT_LIMITS
) -> TextDataset:
    """Read the text dataset a spec describes.

    Raises:
        DatasetError: the source cannot be read or breaks a rule; the message names the rows.
        LexiconMissingError: ``wordnet-topics`` without the WordNet database.
    """
    if isinstance(spec, WordNetTopicsSpec):
        return load_wordnet_topics(spec)
    if isinstance(spec, TextTableSpec):
        return load_text_table(spec.path, limits)
    raise TypeError(f"not a text dataset spec: {spec!r}")
