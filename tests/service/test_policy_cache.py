"""The in-memory policy cache: entries, renderings, invalidation and expiry, and the dataset
policy route served from it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from ops.presets import PRESETS
from service.db.models import PolicyRecord, Search
from service.policies.cache import Entry, PolicyCache
from service.runtime import Runtime


def _run_in_own_loop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` in a new event loop on its own thread.

    Other tests of the suite (the browser tests' Playwright) may leave an event loop running
    on the main thread, where ``asyncio.run`` refuses to start another.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as exc:  # handed to the test's thread below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "scenario did not finish in 60 s"
    if errors:
        raise errors[0]


def test_put_get_render_and_invalidate() -> None:
    cache = PolicyCache(ttl_s=60)
    assert cache.get(1) is None
    cache.remember(1, "json", b"orphan")  # no entry: not kept
    assert cache.rendered(1, "json") is None
    cache.put(1, owner_id=7, payload={"policy": {"kind": "none"}})
    cache.remember(1, "json", b"{}")
    assert cache.get(1) == (7, {"policy": {"kind": "none"}})
    assert cache.rendered(1, "json") == b"{}"
    cache.put(1, owner_id=7, payload={"policy": {"kind": "randaugment"}})
    assert cache.rendered(1, "json") is None  # a new payload drops old renderings
    cache.remember(1, "timm", b'"rand-m9-n2"')
    cache.invalidate(1)
    assert cache.get(1) is None and cache.rendered(1, "timm") is None


def test_entries_expire() -> None:
    cache = PolicyCache(ttl_s=0.01)
    cache.put(2, owner_id=1, payload={})
    time.sleep(0.02)
    assert cache.get(2) is None


def _loader(
    payloads: list[dict[str, Any]], gate: asyncio.Event | None = None
) -> tuple[Callable[[], Awaitable[Entry]], list[int]]:
    """A load that hands out ``payloads`` in turn (after ``gate``), counting its calls."""
    calls: list[int] = []

    async def load() -> Entry:
        calls.append(1)
        if gate is not None:
            await gate.wait()
        if len(calls) > len(payloads):
            raise LookupError("gone")
        return 7, payloads[len(calls) - 1]

    return load, calls


def test_concurrent_misses_share_one_load() -> None:
    async def scenario() -> None:
        cache = PolicyCache(ttl_s=60)
        gate = asyncio.Event()
        load, calls = _loader([{"v": 1}], gate)
        waiters = [asyncio.ensure_future(cache.fetch(1, 7, load)) for _ in range(20)]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*waiters) == [(7, {"v": 1})] * 20
        assert len(calls) == 1 and cache.get(1) == (7, {"v": 1})
        other, other_calls = _loader([{"v": 1}])
        await cache.fetch(2, 8, other)  # another dataset: its own load
        assert len(other_calls) == 1

    _run_in_own_loop(scenario)


def test_an_expired_entry_is_served_while_one_refresh_runs() -> None:
    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def scenario() -> None:
        cache = PolicyCache(ttl_s=0.05)
        gate = asyncio.Event()
        load, calls = _loader([{"v": 1}, {"v": 2}], gate)
        gate.set()
        assert await cache.fetch(1, 7, load) == (7, {"v": 1})
        gate.clear()
        time.sleep(0.06)
        stale = [await cache.fetch(1, 7, load) for _ in range(5)]
        await settle()
        assert stale == [(7, {"v": 1})] * 5 and len(calls) == 2  # one refresh in flight
        gate.set()
        await settle()
        assert cache.get(1) == (7, {"v": 2})
        time.sleep(0.06)
        await cache.fetch(1, 7, load)  # this refresh fails: the entry is dropped
        await settle()
        assert cache.get(1) is None
        with pytest.raises(LookupError):
            await cache.fetch(1, 7, load)

    _run_in_own_loop(scenario)


def test_a_load_overtaken_by_an_invalidation_is_not_kept() -> None:
    async def scenario() -> None:
        cache = PolicyCache(ttl_s=60)
        gate = asyncio.Event()
        load, _ = _loader([{"v": "before the write"}], gate)
        waiter = asyncio.ensure_future(cache.fetch(1, 7, load))
        await asyncio.sleep(0)
        cache.invalidate(1)  # a write lands while the load reads the old row
        gate.set()
        assert await waiter == (7, {"v": "before the write"})
        assert cache.get(1) is None

    _run_in_own_loop(scenario)


def test_a_rendering_of_a_replaced_payload_is_not_kept() -> None:
    cache = PolicyCache(ttl_s=60)
    old = {"v": 1}
    cache.put(1, owner_id=7, payload=old)
    cache.put(1, owner_id=7, payload={"v": 2})
    cache.remember(1, "json", b'{"v":1}', source=old)
    assert cache.rendered(1, "json") is None


def test_the_dataset_route_serves_from_the_cache(
    client: TestClient, runtime: Runtime, digits: dict[str, object]
) -> None:
    did = digits["id"]
    assert isinstance(did, int)
    url = f"/api/v1/datasets/{did}/policy"
    assert client.get(url).status_code == 404  # no completed search yet: nothing cached
    policy = PRESETS["randaugment-2-9"].model_dump(mode="json")
    assert runtime.local_user is not None
    with runtime.transaction() as session:
        search = Search(owner_id=runtime.local_user.id, dataset_id=did, spec={}, state="completed")
        session.add(search)
        session.flush()
        session.add(PolicyRecord(search_id=search.id, dataset_id=did, policy=policy, accuracy=0.5))
    first = client.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert first.json() == {"search_id": search.id, "dataset_id": did, "accuracy": 0.5,
                            "provisional": False, "format": "json", "policy": policy,
                            "exported": None}  # fmt: skip
    timm = client.get(url, params={"format": "timm"}).json()
    assert timm["format"] == "timm" and isinstance(timm["exported"], str)
    assert client.get(url, params={"format": "x"}).status_code == 422
    with runtime.transaction() as session:  # a write that bypasses the invalidation
        session.execute(update(PolicyRecord).values(accuracy=0.7))
    assert client.get(url).content == first.content  # served from memory
    runtime.policy_cache.invalidate(did)
    assert client.get(url).json()["accuracy"] == 0.7
