"""The training part of a text dataset: every text it does not tag ``test``.

Text searches run through the search lifecycle like image searches (`search.text.trials`);
this is the split rule they share with the benchmark (`benchmarks.text_quality`).
"""

from __future__ import annotations

import numpy as np

from search.datasets.dataset import SPLIT_CODES
from search.text.dataset import TextDataset


def training_part(ds: TextDataset) -> TextDataset:
    """Every text the dataset does not tag ``test`` (tagged ``val`` texts join training)."""
    if ds.splits is None:
        return ds
    return ds.subset(np.flatnonzero(ds.splits != SPLIT_CODES["test"]))
