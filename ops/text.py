"""Text ops (easy data augmentation, EDA: Wei & Zou, 2019) and their per-sentence applier.

Every op works on a sentence's whitespace-separated words and takes a rate ``alpha``, the
fraction of the words it changes; a policy stores ``magnitude`` in [0, 1] and the rate is
``alpha = magnitude * RATE_MAX`` (:data:`RATE_MAX` = 0.5, the largest rate of the EDA paper's
sweep; EDA's default alpha = 0.1 is magnitude 0.2). With ``n = max(1, int(alpha * words))``:

* ``SynonymReplacement``: replace ``n`` distinct non-stop words that have WordNet synonyms,
  each by one of its synonyms drawn uniformly;
* ``RandomInsertion``: ``n`` times, insert a synonym of a random non-stop word at a random
  position;
* ``RandomSwap``: ``n`` times, swap two random words;
* ``RandomDeletion``: delete each word with probability ``alpha`` (one word always stays).

A magnitude of 0 leaves the sentence unchanged. The table :data:`TEXT_OPS` is the single source
of the op catalogue. Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ops.lexicon import STOP_WORDS, WordNet
from ops.policy import TEXT_RATE_MAX as RATE_MAX
from ops.policy import Policy, TextOpName

#: How many words random insertion tries before giving up on finding one with synonyms.
_INSERT_TRIES = 10

Words = list[str]
TextFn = Callable[[Words, float, np.random.Generator, WordNet | None], Words]


def magnitude_to_rate(magnitude: float) -> float:
    """The rate ``alpha`` of a magnitude in [0, 1].

    Raises:
        ValueError: for a magnitude outside [0, 1].
    """
    if not 0.0 <= magnitude <= 1.0:
        raise ValueError(f"magnitude {magnitude!r} is outside [0, 1]")
    return magnitude * RATE_MAX


def rate_to_magnitude(rate: float) -> float:
    """The magnitude of a rate in [0, RATE_MAX] (inverse of `magnitude_to_rate`)."""
    if not 0.0 <= rate <= RATE_MAX:
        raise ValueError(f"rate {rate!r} is outside [0, {RATE_MAX}]")
    return rate / RATE_MAX


def _count(rate: float, words: Words) -> int:
    return max(1, int(rate * len(words))) if rate > 0 else 0


def _needs(lexicon: WordNet | None) -> WordNet:
    if lexicon is None:
        raise ValueError("synonym ops need a lexicon (a WordNet)")
    return lexicon


def _replaceable(word: str, lexicon: WordNet) -> bool:
    return word.lower() not in STOP_WORDS and bool(lexicon.synonyms(word))


def synonym_replacement(
    words: Words, rate: float, rng: np.random.Generator, lexicon: WordNet | None
) -> Words:
    """Replace ``n`` distinct non-stop words by random synonyms."""
    lexicon = _needs(lexicon)
    todo = _count(rate, words)
    out = list(words)
    for index in rng.permutation(len(words)):
        if todo == 0:
            break
        if _replaceable(words[index], lexicon):
            choices = lexicon.synonyms(words[index])
            out[index] = choices[int(rng.integers(len(choices)))]
            todo -= 1
    return out


def random_insertion(
    words: Words, rate: float, rng: np.random.Generator, lexicon: WordNet | None
) -> Words:
    """Insert synonyms of random non-stop words at random positions, ``n`` times."""
    lexicon = _needs(lexicon)
    out = list(words)
    for _ in range(_count(rate, words)):
        for _ in range(_INSERT_TRIES):
            word = out[int(rng.integers(len(out)))] if out else ""
            if word and _replaceable(word, lexicon):
                choices = lexicon.synonyms(word)
                synonym = choices[int(rng.integers(len(choices)))]
                out.insert(int(rng.integers(len(out) + 1)), synonym)
                break
    return out


def random_swap(
    words: Words, rate: float, rng: np.random.Generator, lexicon: WordNet | None
) -> Words:
    """Swap two random positions ``n`` times (sentences of one word stay as they are)."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(_count(rate, words)):
        first, second = (int(v) for v in rng.choice(len(out), size=2, replace=False))
        out[first], out[second] = out[second], out[first]
    return out


def random_deletion(
    words: Words, rate: float, rng: np.random.Generator, lexicon: WordNet | None
) -> Words:
    """Delete each word with probability ``rate``; a random word stays if all would go."""
    if rate <= 0 or len(words) < 2:
        return list(words)
    keep = rng.random(len(words)) >= rate
    if not keep.any():
        return [words[int(rng.integers(len(words)))]]
    return [word for word, kept in zip(words, keep, strict=True) if kept]


@dataclass(frozen=True)
class TextOpDef:
    """One text op: its function and what its rate means, in words."""

    name: TextOpName
    fn: TextFn
    description: str
    uses_lexicon: bool


#: Every text op by its policy name (the names of :data:`ops.policy.TextOpName`).
TEXT_OPS: dict[str, TextOpDef] = {
    op.name: op
    for op in (
        TextOpDef(
            "SynonymReplacement",
            synonym_replacement,
            "replace max(1, alpha*words) non-stop words by WordNet synonyms",
            True,
        ),
        TextOpDef(
            "RandomInsertion",
            random_insertion,
            "insert max(1, alpha*words) synonyms of non-stop words at random positions",
            True,
        ),
        TextOpDef(
            "RandomSwap", random_swap, "swap two random words max(1, alpha*words) times", False
        ),
        TextOpDef(
            "RandomDeletion", random_deletion, "delete each word with probability alpha", False
        ),
    )
}


def apply_text_op(
    name: str, text: str, magnitude: float, rng: np.random.Generator, lexicon: WordNet | None
) -> str:
    """Apply one op by name to one sentence.

    Raises:
        ValueError: for an unknown op or a magnitude outside [0, 1].
    """
    op = TEXT_OPS.get(name)
    if op is None:
        raise ValueError(f"unknown text op {name!r}; known text ops: {', '.join(TEXT_OPS)}")
    return " ".join(op.fn(text.split(), magnitude_to_rate(magnitude), rng, lexicon))


def augmented_copies(policy: Policy) -> int:
    """Augmented copies per sentence a policy makes (0 when it has no active op)."""
    if policy.text is None or not any(step.magnitude > 0 for step in policy.text.ops):
        return 0
    return policy.text.copies


class TextAugmenter:
    """Apply a ``text`` policy to sentences, independently per sentence.

    Each augmented sentence goes through one op drawn uniformly from the policy's ops with a
    non-zero magnitude (EDA makes each copy with one technique, the techniques in equal parts).

    Args:
        policy: a policy of kind ``text`` (``none`` is accepted and changes nothing).
        lexicon: the synonym source; opened from the default WordNet folder when the policy
            needs one and none is given.

    Raises:
        ValueError: for another kind of policy.
        LexiconMissingError: when the policy needs synonyms and WordNet is missing.
    """

    def __init__(self, policy: Policy, lexicon: WordNet | None = None) -> None:
        if policy.kind not in ("text", "none"):
            raise ValueError(f"a TextAugmenter needs a 'text' policy, not {policy.kind!r}")
        self.policy = policy
        steps = policy.text.ops if policy.text is not None else []
        self.steps = tuple((step.op, step.magnitude) for step in steps if step.magnitude > 0)
        self.copies = augmented_copies(policy)
        needs = any(TEXT_OPS[name].uses_lexicon for name, _ in self.steps)
        self.lexicon = lexicon if lexicon is not None or not needs else WordNet()

    def augment(self, texts: Sequence[str], rng: np.random.Generator) -> list[str]:
        """One augmented version of every sentence, each with its own op and draws."""
        if not self.steps:
            return list(texts)
        picks = rng.integers(len(self.steps), size=len(texts))
        out = []
        for text, pick in zip(texts, picks, strict=True):
            name, magnitude = self.steps[int(pick)]
            out.append(apply_text_op(name, text, magnitude, rng, self.lexicon))
        return out

    def expand(
        self, texts: Sequence[str], labels: Sequence[int], rng: np.random.Generator
    ) -> tuple[list[str], list[int]]:
        """The sentences followed by ``copies`` augmented versions of each, with their labels."""
        out_texts, out_labels = list(texts), list(labels)
        for _ in range(self.copies):
            out_texts += self.augment(texts, rng)
            out_labels += list(labels)
        return out_texts, out_labels
