"""Admission control: how much work the server accepts, from whom, and for how long it may wait.

Work is counted in (query, document) pairs, the unit the reranker pays for: a rerank or
score request weighs its number of pairs, a search its number of candidates. The server
holds at most ``max_pending_pairs`` of admitted work (running and waiting) and at most
``max_client_pairs`` for any one client (API key, else address); beyond those a request
is answered at once, never queued: 429 (this client has too much waiting) or 503 (the
server is full), both with ``Retry-After`` estimated from the recent throughput. An
admitted request that is not done within ``request_timeout_s`` gets 503 with
``Retry-After``; its work still waiting is dropped.

Example::

    >>> admission = Admission(max_pending=100, max_per_client=60)
    >>> with admission.admit("alice", 50):
    ...     admission.pending
    50
    >>> admission.pending
    0
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import Hashable, Iterator

logger = logging.getLogger(__name__)

#: Who is asking, set per request by :class:`~pipeline.apps.server.middleware.ClientIdentity`.
current_client: contextvars.ContextVar[Hashable] = contextvars.ContextVar("qa_search_client", default=None)


class Overloaded(Exception):
    """Work refused: ``status`` 429 or 503, ``retry_after`` seconds."""

    def __init__(self, status: int, detail: str, retry_after: int):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class Admission:
    """Counts admitted pairs in total and per client; refuses what would go over either limit."""

    def __init__(self, max_pending: int, max_per_client: int, initial_rate: float = 200.0):
        self.max_pending = max_pending
        self.max_per_client = max_per_client
        self.pending = 0
        self.by_client: Counter = Counter()
        self.rate = initial_rate  # pairs per second, a moving average of finished work
        self.refused = Counter()
        self._lock = threading.Lock()

    def retry_after(self) -> int:
        """Seconds until the work now admitted is likely done (at least 1)."""
        return max(1, math.ceil(self.pending / max(self.rate, 1.0)))

    def at_limit(self, client: Hashable) -> bool:
        """True when ``client`` holds its whole share, so any request of it would be refused with 429."""
        return self.by_client.get(client, 0) >= self.max_per_client

    def refuse_client(self, client: Hashable, weight: int | None = None) -> Overloaded:
        """The 429 for ``client`` (counted), to raise or to send."""
        self.refused[429] += 1
        held = self.by_client.get(client, 0)
        adding = "" if weight is None else f"; with these {weight:,} it would go"
        return Overloaded(
            429,
            f"This client already has {held:,} pairs of work waiting{adding or '; more would go'} over "
            f"{self.max_per_client:,} (max_client_pairs). Retry later.",
            self.retry_after(),
        )

    @contextmanager
    def admit(self, client: Hashable, weight: int) -> Iterator[None]:
        weight = max(1, int(weight))
        with self._lock:
            if self.by_client[client] + weight > self.max_per_client:
                raise self.refuse_client(client, weight)
            if self.pending + weight > self.max_pending:
                self.refused[503] += 1
                raise Overloaded(
                    503,
                    f"The server is at capacity ({self.pending:,} pairs of work admitted, max_pending_pairs "
                    f"{self.max_pending:,}). Retry later.",
                    self.retry_after(),
                )
            self.pending += weight
            self.by_client[client] += weight
        started = time.perf_counter()
        finished = False
        try:
            yield
            finished = True
        finally:
            with self._lock:
                self.pending -= weight
                self.by_client[client] -= weight
                if self.by_client[client] <= 0:
                    del self.by_client[client]
                if finished:
                    elapsed = max(time.perf_counter() - started, 1e-3)
                    self.rate = 0.8 * self.rate + 0.2 * (weight / elapsed)
