"""The text proxy model: a fastText-style bag of word and bigram embeddings.

`Tokenizer` lower-cases a text and splits it into words (letters, digits and apostrophes);
every word of its vocabulary (built from the training texts) has an id, and every other word
and every bigram falls into one of ``buckets`` hashed slots (CRC-32, the same on every machine),
as fastText does. `NgramClassifier` averages the embeddings of a text's ids
(``nn.EmbeddingBag``, sparse gradients: a step touches only the rows a batch uses) and maps
the mean to class logits with one linear layer. Augmented
copies train the hashed slots of words the originals never had (synonyms), which is where text
augmentation reaches test words the training texts lack.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import torch
from torch import Tensor, nn

_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Tokenizer:
    """Words to ids: the vocabulary first, then the hashed buckets.

    Attributes:
        vocabulary: the known words; word ``vocabulary[i]`` has id ``i``.
        buckets: hashed slots for unknown words and for bigrams.
        bigrams: whether bigrams are features.
    """

    vocabulary: tuple[str, ...]
    buckets: int = 1 << 16
    bigrams: bool = True

    @classmethod
    def fit(
        cls, texts: Sequence[str], max_words: int = 50_000, buckets: int = 1 << 16
    ) -> Tokenizer:
        """The most frequent words of ``texts`` (ties by first appearance) as the vocabulary."""
        counts = Counter(word for text in texts for word in words_of(text))
        return cls(tuple(word for word, _ in counts.most_common(max_words)), buckets)

    @property
    def size(self) -> int:
        """Number of ids (vocabulary plus buckets)."""
        return len(self.vocabulary) + self.buckets

    def ids(self, text: str) -> list[int]:
        """The feature ids of one text (at least one: an empty text maps to bucket 0)."""
        index = self._index
        words = words_of(text)
        known = len(self.vocabulary)
        out = [index.get(w, known + _bucket(w, self.buckets)) for w in words]
        if self.bigrams:
            out += [known + _bucket(f"{a} {b}", self.buckets) for a, b in pairwise(words)]
        return out or [known]

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Flat ids and offsets of a batch, as ``nn.EmbeddingBag`` takes them."""
        lists = [self.ids(text) for text in texts]
        offsets = torch.tensor([0, *[len(ids) for ids in lists[:-1]]]).cumsum(0)
        flat = torch.tensor([i for ids in lists for i in ids], dtype=torch.int64)
        return flat, offsets

    @cached_property
    def _index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.vocabulary)}


def words_of(text: str) -> list[str]:
    """The tokenizer's words of a text."""
    return _WORD.findall(text.lower())


def _bucket(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode()) % buckets


class NgramClassifier(nn.Module):
    """Mean of word and bigram embeddings, then a linear layer (fastText's classifier).

    Args:
        num_ids: number of feature ids (`Tokenizer.size`).
        num_classes: number of classes.
        dim: embedding width.
        dropout: dropout on the mean embedding.
    """

    def __init__(self, num_ids: int, num_classes: int, dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.EmbeddingBag(num_ids, dim, mode="mean", sparse=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        # fastText's initialisation: small input embeddings, a zero output layer.
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: Tensor, offsets: Tensor) -> Tensor:
        """Class logits of a batch given as flat ids and offsets."""
        return self.head(self.dropout(self.embedding(ids, offsets)))
