"""In-memory cache of each dataset's best policy, so the hot read path skips the database."""

from __future__ import annotations

import threading
import time
from typing import Any


class PolicyCache:
    """Maps a dataset id to its best policy payload; any write to policies invalidates it.

    Entries carry the owner id so the read path can still check ownership without a query.
    They also expire after ``ttl_s``: another API replica may have written a newer policy, and
    only this process's writes invalidate at once.

    Args:
        ttl_s: Seconds an entry stays valid.
    """

    def __init__(self, ttl_s: float = 5.0) -> None:
        self._entries: dict[int, tuple[float, int, dict[str, Any]]] = {}
        self._rendered: dict[tuple[int, str], bytes] = {}
        self._lock = threading.Lock()
        self._ttl_s = ttl_s

    def get(self, dataset_id: int) -> tuple[int, dict[str, Any]] | None:
        """The cached ``(owner_id, payload)`` for a dataset, or None."""
        with self._lock:
            entry = self._entries.get(dataset_id)
            if entry is None or time.monotonic() - entry[0] > self._ttl_s:
                return None
            return entry[1], entry[2]

    def put(self, dataset_id: int, owner_id: int, payload: dict[str, Any]) -> None:
        """Cache a dataset's best policy payload (dropping its stale renderings)."""
        with self._lock:
            self._entries[dataset_id] = (time.monotonic(), owner_id, payload)
            self._drop_rendered(dataset_id)

    def rendered(self, dataset_id: int, fmt: str) -> bytes | None:
        """The response body already rendered for ``fmt``, if any."""
        with self._lock:
            return self._rendered.get((dataset_id, fmt))

    def remember(self, dataset_id: int, fmt: str, body: bytes) -> None:
        """Keep a rendered response body beside the entry it was rendered from."""
        with self._lock:
            if dataset_id in self._entries:
                self._rendered[(dataset_id, fmt)] = body

    def _drop_rendered(self, dataset_id: int) -> None:
        for key in [k for k in self._rendered if k[0] == dataset_id]:
            del self._rendered[key]

    def invalidate(self, dataset_id: int | None = None) -> None:
        """Forget one dataset's entry, or every entry."""
        with self._lock:
            if dataset_id is None:
                self._entries.clear()
                self._rendered.clear()
            else:
                self._entries.pop(dataset_id, None)
                self._drop_rendered(dataset_id)
