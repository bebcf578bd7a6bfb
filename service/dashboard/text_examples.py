"""Example sentences of a text policy for the dashboard's policy page (text in place of images)."""

from __future__ import annotations

import functools
import json
from typing import Any

#: Sentences shown (one per class, in class order) and augmented versions of each.
EXAMPLE_TEXTS = 4
EXAMPLE_DRAWS = 3


@functools.lru_cache(maxsize=16)
def _sample_texts(spec_json: str) -> tuple[str, ...]:
    """One training text per class (up to EXAMPLE_TEXTS); cached because reading a text set
    (WordNet's glosses, a table) takes about a second."""
    from pydantic import TypeAdapter

    from search.datasets.spec import TextDatasetSpec
    from search.text.loader import load_text_dataset
    from search.text.search import training_part

    data = training_part(load_text_dataset(TypeAdapter(TextDatasetSpec).validate_json(spec_json)))
    picks = [int((data.labels == k).argmax()) for k in range(data.num_classes)]
    return tuple(data.texts[i] for i in picks[:EXAMPLE_TEXTS])


def text_examples(
    dataset_spec: dict[str, Any], policy: dict[str, Any], seed: int
) -> list[tuple[str, list[str]]]:
    """(sentence, augmented versions) pairs of ``policy`` on texts of the dataset (seeded)."""
    import numpy as np

    from ops.policy import load_policy
    from ops.text import TextAugmenter

    augmenter = TextAugmenter(load_policy(policy))
    rng = np.random.default_rng(seed)
    texts = _sample_texts(json.dumps(dataset_spec, sort_keys=True))
    return [(text, augmenter.augment([text] * EXAMPLE_DRAWS, rng)) for text in texts]
