"""First-stage retrieval: BM25, dense, or both fused into one candidate list.

Example::

    >>> from pipeline.retrieve import Retriever
    >>> retriever = Retriever(index, encoder)                     # doctest: +SKIP
    >>> found = retriever.retrieve("Who won?", k=50, settings=SearchSettings(mode="hybrid"))  # doctest: +SKIP
    >>> found.candidates[0].ranks, found.timings                           # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pipeline.config import RetrievalMode, SearchSettings
from pipeline.errors import ConfigError
from pipeline.index import SearchIndex
from pipeline.models.encoder import BiEncoder
from pipeline.retrieve.fusion import fuse


@dataclass
class Candidate:
    """A passage (by position in the index) with each stage's score and 1-based rank."""

    position: int
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


#: How deep each retriever's list is before hybrid fusion in a reranked search (the blend and a fitted
#: ranking policy both read the fused scores): a candidate's fused score and rank then do not depend on
#: how many candidates were asked for (the top ``k`` of a deeper search are the same candidates with the
#: same scores).
LIST_DEPTH = 100


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


@dataclass
class Retrieval:
    """What first-stage retrieval found for one question: candidates best first, and milliseconds per stage."""

    question: str
    candidates: list[Candidate]
    timings: dict[str, float] = field(default_factory=dict)


class Retriever:
    """BM25, dense or hybrid retrieval over one index; settings come from :class:`SearchSettings`."""

    def __init__(self, index: SearchIndex, encoder: BiEncoder | None):
        self.index = index
        self.encoder = encoder

    def _dense_lists(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, list[list[tuple[int, float]]]]:
        if self.encoder is None:
            raise ConfigError("dense and hybrid retrieval need a bi-encoder; use mode 'bm25' or load one.")
        vectors = self.encoder.encode(list(queries))
        return vectors, self.index.dense.search(vectors, k)

    def _complete_dense(self, candidates: list[Candidate], vector: np.ndarray, dense: list[tuple[int, float]]) -> None:
        """Give every candidate the dense list missed its bi-encoder similarity (``scores["dense"]``, no rank).

        From the index's stored vectors; where the index keeps none (IVF without
        exact re-scoring), the list's lowest similarity stands in, an upper bound.
        Either way it does not depend on how many candidates were kept.
        """
        missing = [c for c in candidates if "dense" not in c.scores]
        if not missing:
            return
        exact = self.index.dense.similarities(vector, [c.position for c in missing])
        floor = dense[-1][1] if dense else 0.0
        for i, cand in enumerate(missing):
            cand.scores["dense"] = float(exact[i]) if exact is not None else float(floor)

    def retrieve(self, query: str, k: int, settings: SearchSettings | None = None) -> Retrieval:
        """The ``k`` best candidates for one query (mode and fusion from ``settings``, default the product's)."""
        return self.retrieve_many([query], k, settings)[0]

    def retrieve_many(self, queries: Sequence[str], k: int, settings: SearchSettings | None = None,
                      *, list_depth: int = 0) -> list[Retrieval]:
        """:meth:`retrieve` for many queries; dense queries are encoded in one batch.

        ``list_depth`` (hybrid only): fuse each retriever's top ``max(k, list_depth)``
        and keep the fused top ``k`` (see :data:`LIST_DEPTH`); 0 fuses the top ``k``.
        With ``list_depth`` (a reranked search), every kept candidate of a dense or
        hybrid search carries its bi-encoder similarity in ``scores["dense"]``, also
        those the dense list missed (they have no ``ranks["dense"]``).
        """
        settings = settings or SearchSettings()
        mode = settings.mode
        depth = max(k, list_depth) if mode is RetrievalMode.HYBRID else k
        dense_lists: list[list[tuple[int, float]]] = [[] for _ in queries]
        vectors = None
        dense_ms = 0.0
        if mode in (RetrievalMode.DENSE, RetrievalMode.HYBRID) and queries:
            start = time.perf_counter()
            vectors, dense_lists = self._dense_lists(queries, depth)
            dense_ms = _ms(start) / len(queries)
        out = []
        for q, (query, dense) in enumerate(zip(queries, dense_lists)):
            timings: dict[str, float] = {}
            lists: dict[str, list[tuple[int, float]]] = {}
            if mode in (RetrievalMode.BM25, RetrievalMode.HYBRID):
                start = time.perf_counter()
                lists["bm25"] = self.index.bm25.search(query, depth)
                timings["bm25"] = _ms(start)
            if mode in (RetrievalMode.DENSE, RetrievalMode.HYBRID):
                lists["dense"] = dense
                timings["dense"] = dense_ms
            candidates: dict[int, Candidate] = {}
            for stage, pairs in lists.items():
                for rank, (position, score) in enumerate(pairs, start=1):
                    cand = candidates.setdefault(position, Candidate(position))
                    cand.scores[stage] = score
                    cand.ranks[stage] = rank
            if mode is RetrievalMode.HYBRID:
                start = time.perf_counter()
                fused = fuse(lists, settings)
                timings["fusion"] = _ms(start)
            else:
                (fused,) = lists.values()
            ranked = []  # only the top k keep their place; the rest of the lists were there to fuse them
            for rank, (position, score) in enumerate(fused[:k], start=1):
                cand = candidates[position]
                cand.scores["fused"] = float(score)
                cand.ranks["fused"] = rank
                ranked.append(cand)
            if list_depth and vectors is not None:  # the blend weighs every candidate's similarity
                self._complete_dense(ranked, vectors[q], dense)
            out.append(Retrieval(query, ranked, timings))
        return out
