"""Offline synonyms for the text ops: the WordNet 3.0 database read from its own files.

The database is the one Debian ships as ``wordnet-base`` (``/usr/share/wordnet``: ``index.*``
and ``data.*`` for nouns, verbs, adjectives and adverbs). Files are memory-mapped and searched
in place (index files are sorted, data files are addressed by byte offset), so opening a
lexicon costs nothing and forked workers share its pages.

Synonyms follow the EDA reference implementation (Wei & Zou, 2019): every lemma of every synset
the word belongs to, underscores and hyphens as spaces, letters and spaces only, the word itself
left out. Words are looked up as written (lower case), without morphological reduction.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

#: Where the database is looked for when no folder is given and the variable below is unset.
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
#: Environment variable naming another WordNet folder.
WORDNET_DIR_ENV = "AUGSEARCH_WORDNET_DIR"
_POS = ("noun", "verb", "adj", "adv")
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")
_LETTERS = re.compile(r"[a-z ]+")

_STOP_TEXT = """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now"""
#: EDA's stop words (the reference implementation's list): never replaced nor inserted.
STOP_WORDS = frozenset(_STOP_TEXT.split())


class LexiconMissingError(FileNotFoundError):
    """The WordNet database is not where it was looked for."""


def wordnet_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder to read: ``path``, else ``$AUGSEARCH_WORDNET_DIR``, else /usr/share/wordnet."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(WORDNET_DIR_ENV) or DEFAULT_WORDNET_DIR)


class WordNet:
    """Synonym lookups in a WordNet 3.0 database folder.

    Args:
        path: the folder holding ``index.noun``, ``data.noun`` and so on (see `wordnet_dir`).

    Raises:
        LexiconMissingError: naming the folder and how to install the database, if a file is
            missing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = wordnet_dir(path)
        missing = [
            f"{kind}.{pos}"
            for pos in _POS
            for kind in ("index", "data")
            if not (self.path / f"{kind}.{pos}").is_file()
        ]
        if missing:
            raise LexiconMissingError(
                f"WordNet database not found in {self.path} (missing {', '.join(missing)}); "
                "install Debian's wordnet-base package (apt-get install wordnet-base) or set "
                f"{WORDNET_DIR_ENV} to a folder holding the WordNet 3.0 index.* and data.* files"
            )
        self._index = {pos: _map(self.path / f"index.{pos}") for pos in _POS}
        self._data = {pos: _map(self.path / f"data.{pos}") for pos in _POS}
        self._cache: dict[str, tuple[str, ...]] = {}

    def synonyms(self, word: str) -> tuple[str, ...]:
        """The word's synonyms in a fixed order (empty for unknown words)."""
        key = word.lower()
        found = self._cache.get(key)
        if found is None:
            found = self._lookup(key)
            self._cache[key] = found
        return found

    def _lookup(self, word: str) -> tuple[str, ...]:
        if not _LETTERS.fullmatch(word):
            return ()
        lemma = word.replace(" ", "_").encode()
        names: dict[str, None] = {}
        for pos in _POS:
            for offset in _synset_offsets(self._index[pos], lemma):
                for name in _synset_lemmas(self._data[pos], offset):
                    clean = name.replace("_", " ").replace("-", " ").lower()
                    if clean != word and _LETTERS.fullmatch(clean):
                        names[clean] = None
        return tuple(names)

    def synsets(self, pos: str) -> list[tuple[int, list[str], str]]:
        """Every synset of a part of speech: (lexicographer file number, lemmas, gloss)."""
        if pos not in _POS:
            raise ValueError(f"unknown part of speech {pos!r}; known: {', '.join(_POS)}")
        rows = []
        for raw in self._data[pos][:].split(b"\n"):
            if not raw or raw.startswith(b" "):
                continue
            line = raw.decode("utf-8", errors="replace")
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            count = int(fields[3], 16)
            lemmas = [_ADJ_MARKER.sub("", fields[4 + 2 * k]) for k in range(count)]
            rows.append((int(fields[1]), lemmas, gloss.strip()))
        return rows


def _map(path: Path) -> mmap.mmap:
    with path.open("rb") as handle:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def _synset_offsets(index: mmap.mmap, lemma: bytes) -> list[int]:
    """Binary search of a sorted index file for ``lemma``'s line; its synset offsets."""
    key = lemma + b" "
    low, high = 0, len(index)
    while low < high:
        mid = (low + high) // 2
        start = index.rfind(b"\n", 0, mid) + 1
        end = index.find(b"\n", start)
        end = len(index) if end < 0 else end
        line = index[start:end]
        if line.startswith(key):
            fields = line.split()
            synset_count, pointer_count = int(fields[2]), int(fields[3])
            return [int(value) for value in fields[6 + pointer_count :][:synset_count]]
        # Licence lines start with a space and sort before every lemma.
        if line.startswith(b" ") or line < key:
            low = end + 1
        else:
            high = start
    return []


def _synset_lemmas(data: mmap.mmap, offset: int) -> list[str]:
    end = data.find(b"\n", offset)
    fields = data[offset:end].split()
    count = int(fields[3], 16)
    return [_ADJ_MARKER.sub("", fields[4 + 2 * k].decode()) for k in range(count)]
