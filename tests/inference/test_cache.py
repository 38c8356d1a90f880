from __future__ import annotations

from neurons.inference.cache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hits_and_misses_are_counted() -> None:
    cache: TTLCache[str] = TTLCache(2, 60.0)
    assert cache.get("a") is None
    cache.put("a", "A")
    assert cache.get("a") == "A"
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache: TTLCache[str] = TTLCache(10, 60.0, clock=clock)
    cache.put("a", "A")
    clock.now += 59.9
    assert cache.get("a") == "A"
    clock.now += 0.2
    assert cache.get("a") is None
    assert len(cache) == 0


def test_the_least_recently_used_goes_first() -> None:
    cache: TTLCache[str] = TTLCache(2, 60.0)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # now b is the least recently used
    cache.put("c", "C")
    assert cache.get("b") is None
    assert cache.get("a") == "A" and cache.get("c") == "C"
    assert cache.stats()["evictions"] == 1


def test_capacity_zero_keeps_nothing() -> None:
    cache: TTLCache[str] = TTLCache(0, 60.0)
    cache.put("a", "A")
    assert cache.get("a") is None
    assert cache.stats() == {
        "hits": 0,
        "misses": 1,
        "evictions": 0,
        "size": 0,
        "capacity": 0,
        "ttl_s": 60.0,
    }
