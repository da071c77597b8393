"""A bounded map for per-process state: the hot paths keep small caches and debounce stamps
per code, member or day, and a process lives for weeks; every such map is an LRU with a fixed
size, so old days and forgotten codes fall out instead of piling up."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class LRU(Generic[K, V]):
    """At most `maxsize` entries; setting one more drops the least recently used. Thread-safe
    (gthread workers share it): writes hold a lock for a few dictionary operations; a read is
    two OrderedDict calls, each atomic under the GIL, so the hot paths' reads take no lock."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return default
        try:  # noqa: SIM105  (contextlib.suppress would add a context manager to every read)
            self._data.move_to_end(key)
        except KeyError:  # dropped by a concurrent write since: still a valid read
            pass
        return value

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            return self._data.pop(key, default)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._data))

    def items(self) -> list[tuple[K, V]]:
        with self._lock:
            return list(self._data.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LRU):
            return self.items() == other.items()
        if isinstance(other, dict):
            return dict(self.items()) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable
