"""Micro-batching: requests that arrive together share one model call.

A :class:`MicroBatcher` sits between many concurrent ``async`` callers and one
synchronous batch function (a cross-encoder, a search pipeline). Each caller
awaits :meth:`MicroBatcher.submit`; a single worker task collects what arrives
within ``max_wait_ms`` of the first item (up to ``max_batch`` units of work),
groups it by key (items with different keys never share a call), runs the batch
function in a worker thread so the event loop never blocks, and hands every
caller its own slice of the result.

A failure inside a shared call is not blamed on every caller: the batch is run
again one item at a time, so only the item that really fails gets the error.

With ``enabled=False`` every item is its own call (still in a worker thread):
the baseline the load benchmark compares against.

Fairness under load: waiting items are shared between clients by weight
(``submit(..., client=)``, :class:`FairQueue`: the client served the fewest pairs
goes next), so one client's burst or big request never queues ahead of every other
client's next item, and batchers that share a :class:`FairGate` take turns
at the model (one call at a time, round-robin between their ``kind``s: search,
rerank), so one kind of request never starves another. An item whose caller went
away (a cancelled ``submit``: a client that disconnected, a deadline that passed)
is dropped before its call.

Example::

    >>> import asyncio
    >>> batcher = MicroBatcher(lambda key, items: [x * 2 for x in items], max_wait_ms=1)
    >>> async def main():
    ...     return await asyncio.gather(*(batcher.submit(i) for i in range(4)))
    >>> asyncio.run(main())
    [0, 2, 4, 6]
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Generic, Hashable, Sequence, TypeVar

from anyio import to_thread

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchFn = Callable[[Hashable, Sequence[T]], Sequence[R]]


@dataclass
class _Pending(Generic[T]):
    item: T
    key: Hashable
    weight: int
    future: asyncio.Future = field(repr=False)
    client: Hashable = None


class FairQueue:
    """An unbounded async queue that shares the work fairly between clients, by weight (FIFO within a client).

    Each client's lane counts the weight (pairs) it has been served; the next item comes from the waiting
    lane whose next item would finish first (served so far + the item's weight, as in weighted fair
    queueing). A lane that was idle starts level with the least-served waiting lane (no credit banked
    while away). So a client sending 128-pair chunks gets one chunk while each client with 4-pair
    requests gets 32 of them: small requests go ahead of a big one's chunks, a small request arriving
    waits only for the call in progress, and nobody starves.
    """

    def __init__(self) -> None:
        self._lanes: dict[Hashable, deque] = {}
        self._served: dict[Hashable, float] = {}
        self._size = 0
        self._ready = asyncio.Event()

    def put_nowait(self, item: _Pending) -> None:
        lane = self._lanes.get(item.client)
        if lane is None:
            floor = min((self._served[c] for c in self._lanes), default=0.0)
            self._served[item.client] = max(self._served.get(item.client, 0.0), floor)
            lane = self._lanes[item.client] = deque()
        lane.append(item)
        self._size += 1
        self._ready.set()

    def get_nowait(self) -> _Pending:
        if not self._size:
            raise asyncio.QueueEmpty
        # The lane whose next item would finish first (served so far + that item's weight): a small item
        # of a client level with a big one's goes first, so it waits for the call in progress only.
        # Ties: the lane that waited longest.
        client = min(self._lanes, key=lambda c: self._served[c] + self._lanes[c][0].weight)
        lane = self._lanes[client]
        item = lane.popleft()
        self._served[client] += item.weight
        if not lane:
            del self._lanes[client]
            if len(self._served) > 4 * len(self._lanes) + 64:  # forget clients long gone
                self._served = {c: v for c, v in self._served.items() if c in self._lanes}
        self._size -= 1
        if not self._size:
            self._ready.clear()
        return item

    async def get(self) -> _Pending:
        while not self._size:
            await self._ready.wait()
        return self.get_nowait()

    def empty(self) -> bool:
        return not self._size

    def qsize(self) -> int:
        return self._size


class FairGate:
    """At most ``slots`` model calls at once across the batchers that share it, granted round-robin by kind."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self._free = slots
        self._waiting: OrderedDict[str, deque[asyncio.Future]] = OrderedDict()

    @asynccontextmanager
    async def turn(self, kind: str) -> AsyncIterator[None]:
        if self._free and not self._waiting:
            self._free -= 1
        else:
            granted = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(kind, deque()).append(granted)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release()  # granted just as we were cancelled: pass the turn on
                else:
                    granted.cancel()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            kind, lane = next(iter(self._waiting.items()))
            del self._waiting[kind]
            granted = lane.popleft()
            if lane:
                self._waiting[kind] = lane  # this kind goes to the back of the round
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1


@dataclass
class BatchStats:
    """Counters for monitoring: calls made and items they carried."""

    calls: int = 0
    items: int = 0
    retried_alone: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.calls if self.calls else 0.0


class MicroBatcher(Generic[T, R]):
    """Collects concurrent :meth:`submit` calls into shared calls of ``fn(key, items)``.

    Args:
        fn: ``fn(key, items) -> results``, one result per item, in order; runs
            in a worker thread.
        enabled: ``False`` runs every item alone (no waiting, no sharing).
        max_batch: most units of work (the ``weight`` of each item, e.g. its
            number of pairs) in one call; a heavier item still runs, alone.
        max_wait_ms: how long the first item of a batch waits for company.
    """

    def __init__(self, fn: BatchFn, *, enabled: bool = True, max_batch: int = 64, max_wait_ms: float = 5.0,
                 gate: FairGate | None = None, kind: str = "work"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self.fn = fn
        self.enabled = enabled
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self.gate = gate
        self.kind = kind
        self._queue: FairQueue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._carry: _Pending | None = None

    async def submit(self, item: T, *, key: Hashable = None, weight: int = 1, client: Hashable = None) -> R:
        """The result of ``fn(key, [..., item, ...])`` for ``item``; raises what scoring ``item`` raised.

        ``client`` (who asked) decides the round-robin order among waiting items.
        """
        if not self.enabled:
            self.stats.calls += 1
            self.stats.items += 1
            async with self._turn():
                results = await to_thread.run_sync(self._call, key, [item])
            return results[0]
        self._ensure_worker()
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, key, max(1, int(weight)), future, client))
        return await future

    def _turn(self):
        if self.gate is None:
            return _no_gate()
        return self.gate.turn(self.kind)

    async def aclose(self) -> None:
        """Stop the worker; callers still waiting get :class:`RuntimeError`."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            try:
                await worker
            except (asyncio.CancelledError, RuntimeError):
                pass
        pending = [self._carry] if self._carry else []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for p in pending:
            if not p.future.done():
                p.future.set_exception(RuntimeError("the server is shutting down"))
        self._queue = None
        self._loop = None

    # ------------------------------------------------------------------ internals

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._worker is not None and self._loop is loop and not self._worker.done():
            return
        if self._loop is not loop or self._queue is None:
            # First use, or a new event loop (tests, restarts): start afresh on this loop.
            self._loop = loop
            self._queue = FairQueue()
            self._carry = None
        self._worker = loop.create_task(self._run(), name="micro-batcher")

    def _call(self, key: Hashable, items: Sequence[T]) -> Sequence[R]:
        results = self.fn(key, items)
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        return results

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        assert first is not None
        batch, size = [first], first.weight
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            nxt = await self._next(deadline - loop.time())
            if nxt is None:
                break
            if size + nxt.weight > self.max_batch:
                self._carry = nxt  # starts the next batch
                break
            batch.append(nxt)
            size += nxt.weight
        return batch

    async def _run(self) -> None:
        while True:
            batch = [p for p in await self._collect() if not p.future.done()]  # drop cancelled callers
            groups: dict[Hashable, list[_Pending]] = {}
            for p in batch:
                groups.setdefault(p.key, []).append(p)
            for key, group in groups.items():
                await self._dispatch(key, group)

    async def _dispatch(self, key: Hashable, group: list[_Pending]) -> None:
        async with self._turn():
            group = [p for p in group if not p.future.done()]  # callers that left while this call waited
            if group:
                await self._call_group(key, group)

    async def _call_group(self, key: Hashable, group: list[_Pending]) -> None:
        self.stats.calls += 1
        self.stats.items += len(group)
        try:
            results = await to_thread.run_sync(self._call, key, [p.item for p in group])
        except Exception as exc:  # noqa: BLE001 - delivered to the callers, never lost
            if len(group) == 1:
                _settle(group[0].future, error=exc)
                return
            logger.info("A shared batch of %d failed (%s); scoring each alone", len(group), exc)
            for p in group:
                self.stats.retried_alone += 1
                try:
                    (result,) = await to_thread.run_sync(self._call, key, [p.item])
                except Exception as alone:  # noqa: BLE001
                    _settle(p.future, error=alone)
                else:
                    _settle(p.future, result=result)
            return
        for p, result in zip(group, results):
            _settle(p.future, result=result)


@asynccontextmanager
async def _no_gate() -> AsyncIterator[None]:
    yield


def _settle(future: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the caller went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
