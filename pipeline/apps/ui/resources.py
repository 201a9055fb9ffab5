"""What the web page keeps in memory for every visitor: indexes and models, shared, bounded, loaded once.

A pipeline is cheap to put together from loaded parts, so the page does not cache
whole pipelines per combination of settings (each toggle combination used to load its
own copy of the index and of every model). Instead a :class:`ResourcePool` per kind of
part (index with its bi-encoder, reranker, reader) holds at most ``capacity`` of them,
keyed by what they are (index path and build time, model name), drops the least
recently used one beyond that, and loads each one once even when several sessions ask
for it at the same moment. :class:`SearchGate` bounds how many searches run at once.

Example::

    >>> pool = ResourcePool("model", capacity=1)
    >>> pool.get("a", lambda: "loaded a")
    'loaded a'
    >>> pool.get("b", lambda: "loaded b"), list(pool)   # "a" was dropped
    ('loaded b', ['b'])
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ResourcePool(Generic[T]):
    """A thread-safe, bounded, least-recently-used map from a key to a loaded resource."""

    def __init__(self, kind: str, capacity: int):
        if capacity < 1:
            raise ValueError(f"a {kind} pool needs room for at least one, got {capacity}")
        self.kind = kind
        self.capacity = capacity
        self.loads = 0
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The resource for ``key``, loaded with ``load()`` the first time (once, however many ask at once)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per key; the others wait for it and take its result
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            value = load()
            with self._lock:
                self.loads += 1
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.capacity:
                    dropped, _ = self._items.popitem(last=False)
                    logger.info("Dropping the %s %r to stay within %d held", self.kind, dropped, self.capacity)
                self._loading.pop(key, None)
            return value

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._items))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class SearchGate:
    """At most ``limit`` searches at once in this process; :meth:`enter` waits up to ``wait_s`` for a turn."""

    def __init__(self, limit: int, wait_s: float):
        if limit < 1:
            raise ValueError(f"the number of concurrent searches must be at least 1, got {limit}")
        self.limit = limit
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(limit)

    def enter(self) -> bool:
        """Take a turn; ``False`` when none came free within ``wait_s`` (then do not call :meth:`leave`)."""
        return self._slots.acquire(timeout=self.wait_s)

    def leave(self) -> None:
        self._slots.release()
