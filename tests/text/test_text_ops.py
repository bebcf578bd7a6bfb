"""Text ops: every op through the same checks, the stop words, the lexicon, the applier."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ops.lexicon import STOP_WORDS, LexiconMissingError, WordNet
from ops.policy import Policy, TextAugment, TextOpStep
from ops.text import (
    RATE_MAX,
    TEXT_OPS,
    TextAugmenter,
    apply_text_op,
    magnitude_to_rate,
    rate_to_magnitude,
)
from ops.text_presets import eda_policy

SENTENCE = "the old farmer quickly sold his brown horse at the busy market near the river"


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet()


@pytest.mark.parametrize("name", list(TEXT_OPS))
def test_every_op_is_seeded_and_identity_at_zero(name: str, wordnet: WordNet) -> None:
    first = apply_text_op(name, SENTENCE, 1.0, np.random.default_rng(3), wordnet)
    again = apply_text_op(name, SENTENCE, 1.0, np.random.default_rng(3), wordnet)
    assert first == again
    assert first != SENTENCE
    assert apply_text_op(name, SENTENCE, 0.0, np.random.default_rng(3), wordnet) == SENTENCE
    outputs = {
        apply_text_op(name, SENTENCE, 0.4, np.random.default_rng(s), wordnet) for s in range(8)
    }
    assert len(outputs) > 1


def test_rates_follow_the_documented_mapping(wordnet: WordNet) -> None:
    assert magnitude_to_rate(0.2) == pytest.approx(0.1)
    assert magnitude_to_rate(1.0) == RATE_MAX
    assert rate_to_magnitude(0.1) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="outside"):
        magnitude_to_rate(1.5)
    words = SENTENCE.split()  # 15 words: alpha 0.5 -> 7 changes, alpha 0.1 -> 1
    rng = np.random.default_rng(0)
    inserted = apply_text_op("RandomInsertion", SENTENCE, 1.0, rng, wordnet).split()
    assert len(inserted) >= len(words) + 7  # synonyms may hold several words
    swapped = apply_text_op("RandomSwap", SENTENCE, 0.2, rng, wordnet).split()
    assert sorted(swapped) == sorted(words)
    assert sum(a != b for a, b in zip(swapped, words, strict=True)) == 2
    replaced = apply_text_op("SynonymReplacement", SENTENCE, 0.2, rng, wordnet)
    assert replaced != SENTENCE
    deleted = [
        len(
            apply_text_op(
                "RandomDeletion", SENTENCE, 1.0, np.random.default_rng(s), wordnet
            ).split()
        )
        for s in range(200)
    ]
    assert 6.0 < float(np.mean(deleted)) < 9.0  # each of 15 words goes with p = 0.5


def test_stop_words_are_never_replaced(wordnet: WordNet) -> None:
    sentence = "it was the horse that he had been on before"
    words = sentence.split()
    assert [w for w in words if w not in STOP_WORDS] == ["horse"]
    for seed in range(20):
        out = apply_text_op(
            "SynonymReplacement", sentence, 1.0, np.random.default_rng(seed), wordnet
        )
        head, _, tail = out.partition(" that ")
        assert head.startswith("it was the ") and head != "it was the horse"
        assert tail == "he had been on before"
        inserted = apply_text_op(
            "RandomInsertion", sentence, 0.1, np.random.default_rng(seed), wordnet
        )
        extra = Counter(inserted.split()) - Counter(words)
        assert set(extra) <= {w for s in wordnet.synonyms("horse") for w in s.split()}
    only_stops = "it was the that he had been on before"
    for name in ("SynonymReplacement", "RandomInsertion"):
        assert apply_text_op(name, only_stops, 1.0, np.random.default_rng(0), wordnet) == only_stops


def test_wordnet_synonyms(wordnet: WordNet) -> None:
    assert "domestic dog" in wordnet.synonyms("dog")
    assert "dog" not in wordnet.synonyms("dog")
    assert "fast" in wordnet.synonyms("Quick")
    assert wordnet.synonyms("qzxv") == ()
    assert wordnet.synonyms("don't") == ()
    assert all(s.replace(" ", "").isalpha() for s in wordnet.synonyms("run"))


def test_missing_lexicon_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LexiconMissingError, match="wordnet-base"):
        WordNet(tmp_path)
    monkeypatch.setenv("AUGSEARCH_WORDNET_DIR", str(tmp_path))
    with pytest.raises(LexiconMissingError, match=str(tmp_path)):
        TextAugmenter(eda_policy())
    swaps = Policy(kind="text", text=TextAugment(ops=[TextOpStep(op="RandomSwap", magnitude=0.5)]))
    assert TextAugmenter(swaps).lexicon is None  # no synonyms needed, no lexicon opened


def test_augmenter_draws_per_sentence_and_is_reproducible(wordnet: WordNet) -> None:
    augmenter = TextAugmenter(eda_policy(alpha=0.3), wordnet)
    batch = [SENTENCE] * 64
    out = augmenter.augment(batch, np.random.default_rng(1))
    assert out == augmenter.augment(batch, np.random.default_rng(1))
    assert len(set(out)) > 32
    lengths = Counter(len(t.split()) - len(SENTENCE.split()) for t in out)
    assert any(d > 0 for d in lengths) and any(d < 0 for d in lengths) and 0 in lengths


def test_expand_and_kinds(wordnet: WordNet) -> None:
    augmenter = TextAugmenter(eda_policy(copies=3), wordnet)
    texts, labels = augmenter.expand(
        ["a red apple", "a fast car"], [0, 1], np.random.default_rng(0)
    )
    assert texts[:2] == ["a red apple", "a fast car"] and len(texts) == 8
    assert labels == [0, 1] * 4
    none = TextAugmenter(Policy(kind="none"))
    assert none.expand(["x y"], [0], np.random.default_rng(0)) == (["x y"], [0])
    with pytest.raises(ValueError, match="needs a 'text' policy"):
        TextAugmenter(Policy(kind="randaugment"))
    with pytest.raises(ValueError, match="unknown text op"):
        apply_text_op("Rotate", SENTENCE, 0.5, np.random.default_rng(0), wordnet)
