"""Fuse ranked candidate lists from several retrievers into one.

* :func:`reciprocal_rank_fusion`: ``score(d) = sum over lists of 1 / (k + rank(d))``
  with 1-based ranks, as in Cormack, Clarke and Buettcher (SIGIR 2009); ``k=60``.
* :func:`weighted_fusion` (the default, see :class:`~pipeline.config.SearchSettings`): each list's scores are min-max normalised to 0..1,
  then summed with weights; a document missing from a list gets 0 there.

Ties are broken by the document id so that results are deterministic.

Example::

    >>> reciprocal_rank_fusion({"bm25": [3, 1], "dense": [1, 2]}, k=60)[0][0]
    1
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence, TypeVar

from pipeline.config import FusionMethod, SearchSettings

Doc = TypeVar("Doc", bound=Hashable)


def _sorted(scores: dict) -> list[tuple]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[Doc]], k: int = 60) -> list[tuple[Doc, float]]:
    """Fuse best-first lists of document ids; returns (id, fused score) best first."""
    if k < 0:
        raise ValueError(f"RRF k must be non-negative, got {k}")
    fused: dict = {}
    for ranking in rankings.values():
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return _sorted(fused)


def min_max(scores: Sequence[tuple[Doc, float]]) -> dict[Doc, float]:
    """Scores mapped to 0..1 (all 1.0 when every score is the same)."""
    if not scores:
        return {}
    values = [s for _, s in scores]
    low, high = min(values), max(values)
    if high == low:
        return {doc: 1.0 for doc, _ in scores}
    return {doc: (s - low) / (high - low) for doc, s in scores}


def weighted_fusion(
    scored: Mapping[str, Sequence[tuple[Doc, float]]], weights: Mapping[str, float]
) -> list[tuple[Doc, float]]:
    """Sum of min-max normalised scores times each list's weight; returns (id, fused score) best first."""
    missing = set(scored) - set(weights)
    if missing:
        raise ValueError(f"no weight for list(s): {', '.join(sorted(missing))}")
    fused: dict = {}
    for name, pairs in scored.items():
        for doc, value in min_max(pairs).items():
            fused[doc] = fused.get(doc, 0.0) + weights[name] * value
    return _sorted(fused)


def fuse(lists: Mapping[str, Sequence[tuple[Doc, float]]], settings: SearchSettings) -> list[tuple[Doc, float]]:
    """The ``bm25`` and ``dense`` lists fused as ``settings`` say (method, ``rrf_k``, ``dense_weight``)."""
    if settings.fusion is FusionMethod.RRF:
        return reciprocal_rank_fusion({name: [doc for doc, _ in pairs] for name, pairs in lists.items()}, k=settings.rrf_k)
    return weighted_fusion(lists, {"bm25": 1.0 - settings.dense_weight, "dense": settings.dense_weight})
