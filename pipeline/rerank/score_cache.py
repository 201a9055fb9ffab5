"""An in-memory LRU cache of reranker probabilities.

Keyed by (reranker identity — model, backend, token limit —, question,
sha1 of the passage text), so a repeated or refined search (same question,
more candidates, another ``top_k``) scores only the pairs it has not seen.
Entries beyond ``capacity`` are dropped least recently used first. The cache
belongs to one :class:`~pipeline.rerank.reranker.Reranker` (no global state).

Thread-safe: one reranker serves both server batcher threads and every UI
session, so each operation (lookup and reordering, insert and eviction, the
counters) holds one lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class ScoreCache:
    """Least-recently-used map from (identity, question, passage) to a probability."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self.stats = CacheStats()
        self._lock = threading.Lock()

    @staticmethod
    def key(identity: str, question: str, passage: str) -> tuple[str, str, str]:
        return identity, question, hashlib.sha1(passage.encode("utf-8")).hexdigest()

    def get(self, key: tuple[str, str, str]) -> float | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return value

    def put(self, key: tuple[str, str, str], value: float) -> None:
        if not self.capacity:
            return
        with self._lock:
            self._items[key] = float(value)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
