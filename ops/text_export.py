"""A ``text`` policy as paste-able Python that needs no augsearch (numpy and the standard library).

The snippet defines ``augment(text, rng=None)`` (one augmented version: one op drawn uniformly
from the policy's active ops, as :class:`ops.text.TextAugmenter` does) and
``augment_copies(text, rng=None)`` (``COPIES`` of them, the policy's copies). The op functions,
the stop words and the WordNet reader are copied from :mod:`ops.text` and :mod:`ops.lexicon`
(their source, so there is one definition). Synonyms come from the WordNet 3.0 folder
(``/usr/share/wordnet`` or ``$AUGSEARCH_WORDNET_DIR``); where that folder is missing and nltk
with its ``wordnet`` corpus is installed, nltk's WordNet answers instead, restricted to the
synsets that list the word as written (nltk would otherwise reduce it morphologically).
"""

from __future__ import annotations

import ast
import inspect

from ops import lexicon, text
from ops.policy import Policy

#: Functions of :mod:`ops.text` the snippet copies (the ops and what they call).
_TEXT_FUNCTIONS = (
    text._count,
    text._needs,
    text._replaceable,
    text.synonym_replacement,
    text.random_insertion,
    text.random_swap,
    text.random_deletion,
)

_NLTK = '''class NltkWordNet:
    """nltk's WordNet behind the same lookup: synsets that list the word as written."""

    def __init__(self):
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        self._wordnet = wordnet
        self._cache = {}

    def synonyms(self, word):
        key = word.lower()
        if key not in self._cache:
            names = {}
            lemma = key.replace(" ", "_")
            for synset in self._wordnet.synsets(lemma) if _LETTERS.fullmatch(key) else ():
                lemmas = [_ADJ_MARKER.sub("", name) for name in synset.lemma_names()]
                if lemma not in (name.lower() for name in lemmas):
                    continue
                for name in lemmas:
                    clean = name.replace("_", " ").replace("-", " ").lower()
                    if clean != key and _LETTERS.fullmatch(clean):
                        names[clean] = None
            self._cache[key] = tuple(names)
        return self._cache[key]


@functools.cache
def open_lexicon(path=None):
    """The WordNet folder's lexicon; nltk's WordNet where the folder is missing."""
    try:
        return WordNet(path)
    except LexiconMissingError:
        if path is not None:
            raise
        try:
            return NltkWordNet()
        except (ImportError, LookupError):
            raise LexiconMissingError(
                f"no WordNet in {wordnet_dir()} and no nltk wordnet corpus; install Debian's "
                "wordnet-base, or nltk and nltk.download('wordnet')"
            ) from None
'''

_API = '''OPS = {
    "SynonymReplacement": synonym_replacement,
    "RandomInsertion": random_insertion,
    "RandomSwap": random_swap,
    "RandomDeletion": random_deletion,
}
NEEDS_SYNONYMS = {"SynonymReplacement", "RandomInsertion"}


def augment(text, rng=None, lexicon=None):
    """One augmented version of `text`: one of STEPS drawn uniformly, at its rate.

    Args:
        text: a sentence; words are separated by whitespace.
        rng: a numpy.random.Generator (a fresh unseeded one by default).
        lexicon: anything with `synonyms(word) -> tuple[str, ...]` (`open_lexicon()` by default).
    """
    if not STEPS:
        return text
    rng = np.random.default_rng() if rng is None else rng
    name, rate = STEPS[int(rng.integers(len(STEPS)))]
    if lexicon is None and name in NEEDS_SYNONYMS:
        lexicon = open_lexicon()
    return " ".join(OPS[name](text.split(), rate, rng, lexicon))


def augment_copies(text, rng=None, lexicon=None):
    """COPIES augmented versions of `text` (the policy's copies; none if no op is active)."""
    rng = np.random.default_rng() if rng is None else rng
    return [augment(text, rng, lexicon) for _ in range(COPIES if STEPS else 0)]
'''


def _module_body(source: str) -> str:
    """A module's source after its docstring and ``from __future__`` imports."""
    tree = ast.parse(source)
    body = [
        node
        for node in tree.body
        if not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    lines = source.splitlines()
    start = body[0].lineno - 1
    return "\n".join(line for line in lines[start:] if not line.startswith(("import ", "from ")))


def to_text_snippet(policy: Policy) -> str:
    """Paste-able Python applying a ``text`` policy with numpy and the standard library only.

    Raises:
        ValueError: for a policy of another kind (a ``none`` policy gives a snippet that
            changes nothing).
    """
    if policy.kind not in ("text", "none"):
        raise ValueError(
            f"kind {policy.kind!r} is an image policy; the plain-Python export is for kind 'text'"
        )
    steps = [s for s in (policy.text.ops if policy.text else []) if s.magnitude > 0]
    copies = policy.text.copies if policy.text is not None and steps else 0
    rates = "".join(f"    ({s.op!r}, {s.rate!r}),\n" for s in steps)
    functions = "\n\n".join(inspect.getsource(fn).strip() for fn in _TEXT_FUNCTIONS)
    parts = [
        '"""EDA text augmentation (Wei & Zou, 2019) exported from augsearch; needs numpy only."""',
        "from __future__ import annotations\n\nimport functools\nimport mmap\nimport os\nimport re"
        "\nfrom pathlib import Path\n\nimport numpy as np",
        "#: (op, rate alpha): each augmented version goes through one of these, drawn uniformly."
        f"\nSTEPS = [\n{rates}]\n#: Augmented copies per sentence.\nCOPIES = {copies}\n"
        f"_INSERT_TRIES = {text._INSERT_TRIES}",
        _module_body(inspect.getsource(lexicon)).strip(),
        _NLTK.strip(),
        functions,
        _API.strip(),
    ]
    return "\n\n\n".join(parts) + "\n"
