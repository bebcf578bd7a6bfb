"""In-memory cache of each dataset's best policy, so the hot read path skips the database."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

Entry = tuple[int, dict[str, Any]]
"""A dataset's owner id and its best policy payload."""


class PolicyCache:
    """Maps a dataset id to its best policy payload; any write to policies invalidates it.

    Entries carry the owner id so the read path can still check ownership without a query.
    They also expire after ``ttl_s``: another API replica may have written a newer policy, and
    only this process's writes invalidate at once.

    The read path goes through :meth:`fetch`, which keeps the database out of the way of a busy
    route: an expired entry is still served while one background load refreshes it (so it may
    be stale by ``ttl_s`` plus one load), and a missing entry is loaded once for all the
    concurrent requests of a user, instead of once per request (a herd that, behind SQLite's
    writers, can take seconds).

    Args:
        ttl_s: Seconds an entry stays fresh.
    """

    def __init__(self, ttl_s: float = 5.0) -> None:
        self._entries: dict[int, tuple[float, int, dict[str, Any]]] = {}
        self._rendered: dict[tuple[int, str], bytes] = {}
        self._lock = threading.Lock()
        self._ttl_s = ttl_s
        # Bumped by every invalidation: a load that began before one must not store its result.
        self._version = 0
        # Loads in flight, by (dataset id, user id); event-loop side only.
        self._loads: dict[tuple[int, int], asyncio.Task[Entry]] = {}

    def get(self, dataset_id: int) -> Entry | None:
        """The fresh cached ``(owner_id, payload)`` for a dataset, or None."""
        with self._lock:
            entry = self._entries.get(dataset_id)
            if entry is None or time.monotonic() - entry[0] > self._ttl_s:
                return None
            return entry[1], entry[2]

    def put(self, dataset_id: int, owner_id: int, payload: dict[str, Any]) -> None:
        """Cache a dataset's best policy payload (dropping its stale renderings)."""
        with self._lock:
            self._store(dataset_id, owner_id, payload)

    def _store(self, dataset_id: int, owner_id: int, payload: dict[str, Any]) -> None:
        self._entries[dataset_id] = (time.monotonic(), owner_id, payload)
        self._drop_rendered(dataset_id)

    async def fetch(
        self, dataset_id: int, user_id: int, load: Callable[[], Awaitable[Entry]]
    ) -> Entry:
        """The entry for a dataset, loading it with ``load`` only when it has to.

        Args:
            dataset_id: The dataset.
            user_id: The caller; concurrent loads are shared among one user's requests only,
                since ``load`` runs with the caller's access rights.
            load: Reads the entry from the database (raises NotFound as the route would).

        Returns:
            A fresh entry; an expired one while its refresh runs; else the loaded one.
        """
        with self._lock:
            entry = self._entries.get(dataset_id)
            version = self._version
        if entry is not None:
            if time.monotonic() - entry[0] > self._ttl_s:
                self._load_once(dataset_id, user_id, load, version)
            return entry[1], entry[2]
        # shield: a caller that goes away does not cancel the load the others wait for.
        return await asyncio.shield(self._load_once(dataset_id, user_id, load, version))

    def _load_once(
        self, dataset_id: int, user_id: int, load: Callable[[], Awaitable[Entry]], version: int
    ) -> asyncio.Task[Entry]:
        key = (dataset_id, user_id)
        task = self._loads.get(key)
        # A task of another event loop (a test client's, since closed) will never finish here.
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._load(dataset_id, load, version))
            self._loads[key] = task
            task.add_done_callback(lambda t: self._loaded(key, t))
        return task

    async def _load(
        self, dataset_id: int, load: Callable[[], Awaitable[Entry]], version: int
    ) -> Entry:
        owner_id, payload = await load()
        with self._lock:
            if self._version == version:
                self._store(dataset_id, owner_id, payload)
        return owner_id, payload

    def _loaded(self, key: tuple[int, int], task: asyncio.Task[Entry]) -> None:
        if self._loads.get(key) is task:
            del self._loads[key]
        # A failed load (the dataset or its policy is gone, the database is down) drops the
        # entry, so no stale one is served past it; the exception is retrieved here as well,
        # for the background refreshes nobody awaits.
        if task.cancelled() or task.exception() is not None:
            self.invalidate(key[0])

    def rendered(self, dataset_id: int, fmt: str) -> bytes | None:
        """The response body already rendered for ``fmt``, if any."""
        with self._lock:
            return self._rendered.get((dataset_id, fmt))

    def remember(
        self, dataset_id: int, fmt: str, body: bytes, source: dict[str, Any] | None = None
    ) -> None:
        """Keep a rendered response body beside the entry it was rendered from.

        Args:
            dataset_id: The dataset.
            fmt: The export format of ``body``.
            body: The rendered response body.
            source: The payload ``body`` was rendered from: if given and the entry has been
                replaced since, the rendering is not kept.
        """
        with self._lock:
            entry = self._entries.get(dataset_id)
            if entry is not None and (source is None or entry[2] is source):
                self._rendered[(dataset_id, fmt)] = body

    def _drop_rendered(self, dataset_id: int) -> None:
        for key in [k for k in self._rendered if k[0] == dataset_id]:
            del self._rendered[key]

    def invalidate(self, dataset_id: int | None = None) -> None:
        """Forget one dataset's entry, or every entry."""
        with self._lock:
            self._version += 1
            if dataset_id is None:
                self._entries.clear()
                self._rendered.clear()
            else:
                self._entries.pop(dataset_id, None)
                self._drop_rendered(dataset_id)
