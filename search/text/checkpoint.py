"""Text checkpoints: safetensors weights with the model card, vocabulary included, in the
file's metadata (key ``model_card``, as image checkpoints carry theirs).

The card holds everything needed to turn a text into the model's input: the vocabulary in id
order, the bucket count and whether bigrams are features (the hashing is CRC-32 of the word or
of ``"word1 word2"``, modulo the buckets, after the vocabulary's ids; see
:mod:`search.text.model`). Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from search.datasets.dataset import DatasetError
from search.text.model import NgramClassifier, Tokenizer
from search.text.trainer import TextRecipe, TextTrainingResult

CARD_METADATA_KEY = "model_card"


class TextModelCard(BaseModel):
    """What a text checkpoint is.

    Attributes:
        schema_version: version of this card format.
        arch: the model (``ngram-bag``).
        classes: class names in label order.
        vocabulary: the tokenizer's words in id order.
        buckets: hashed slots after the vocabulary.
        bigrams: whether bigrams are features.
        dim: embedding width.
        policy: the text policy the model was trained with (Policy JSON).
        recipe: the trainer recipe.
        metrics: final metrics (``val_accuracy``, ``test_accuracy``...).
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    arch: Literal["ngram-bag"] = "ngram-bag"
    classes: list[str]
    vocabulary: list[str]
    buckets: int
    bigrams: bool
    dim: int
    policy: dict[str, Any]
    recipe: TextRecipe
    metrics: dict[str, float]

    def tokenizer(self) -> Tokenizer:
        """The tokenizer the model was trained with."""
        return Tokenizer(tuple(self.vocabulary), self.buckets, self.bigrams)


def save_text_checkpoint(path: str | Path, result: TextTrainingResult, card: TextModelCard) -> str:
    """Write weights and card to ``path``; return the file's sha256."""
    weights = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    save_file(weights, str(path), metadata={CARD_METADATA_KEY: card.model_dump_json()})
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_text_checkpoint(path: str | Path) -> tuple[NgramClassifier, Tokenizer, TextModelCard]:
    """Read a text checkpoint back into a model ready for inference.

    Raises:
        DatasetError: a file that is not a text checkpoint.
    """
    raw = Path(path).read_bytes()
    try:
        header_size = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_size])
        card = TextModelCard.model_validate_json(header["__metadata__"][CARD_METADATA_KEY])
        weights = load_safetensors(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{str(path)!r} is not a text checkpoint: {exc}") from exc
    tokenizer = card.tokenizer()
    model = NgramClassifier(tokenizer.size, len(card.classes), card.dim)
    model.load_state_dict(weights)
    model.eval()
    return model, tokenizer, card
