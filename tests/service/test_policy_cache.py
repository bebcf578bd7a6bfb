"""The in-memory policy cache: entries, renderings, invalidation and expiry."""

from __future__ import annotations

import time

from service.policies.cache import PolicyCache


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
