"""scrm.lru: the bound on every per-process map of the hot paths."""

from __future__ import annotations

import threading

import pytest

from scrm.lru import LRU


def test_the_least_recently_used_entry_goes_first():
    lru: LRU[str, int] = LRU(2)
    lru["a"], lru["b"] = 1, 2
    assert lru.get("a") == 1  # now "b" is the least recently used
    lru["c"] = 3
    assert (lru.get("b"), lru.get("a"), lru.get("c"), len(lru)) == (None, 1, 3, 2)
    assert lru.pop("a") == 1
    assert list(lru) == ["c"]


def test_it_stays_bounded_under_concurrent_writers():
    lru: LRU[int, int] = LRU(100)

    def write(offset: int) -> None:
        for key in range(offset, offset + 5000):
            lru[key] = key
            lru.get(key - 3)

    threads = [threading.Thread(target=write, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lru) == 100


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        LRU(0)
