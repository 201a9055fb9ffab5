"""Hardening (issue 17): each test here failed on the code before its fix."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from pipeline.rerank.score_cache import ScoreCache


# --------------------------------------------------------------------------- 9: the score cache under threads


class YieldingKey(tuple):
    def __hash__(self):
        time.sleep(0)
        return tuple.__hash__(self)


def test_score_cache_survives_concurrent_get_and_put():
    """Batcher threads and Streamlit sessions share one cache: get/put from many threads never raise and
    the counters add up (before the lock, ``move_to_end`` raised KeyError on an entry evicted meanwhile)."""
    cache = ScoreCache(2)
    # Keys that give the GIL away while hashed, as a longer key or a busy process would: the interleavings
    # that raise happen within a second instead of once a day.
    keys = [YieldingKey(ScoreCache.key("m", "q", str(i))) for i in range(3)]
    errors: list[BaseException] = []
    rounds = 800
    start = threading.Barrier(8)

    def work(offset: int) -> None:
        start.wait()
        try:
            for n in range(rounds):
                key = keys[(n + offset) % len(keys)]
                if cache.get(key) is None:
                    cache.put(key, 0.5)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so a race shows in a short test
    try:
        threads = [threading.Thread(target=work, args=(i * 3,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, f"{type(errors[0]).__name__}: {errors[0]}"
    assert len(cache) <= 2
    assert cache.stats.hits + cache.stats.misses == 8 * rounds
