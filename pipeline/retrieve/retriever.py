"""First-stage retrieval: BM25, dense, or both fused into one candidate list.

Example::

    >>> from pipeline.retrieve import Retriever
    >>> retriever = Retriever(index, encoder)                     # doctest: +SKIP
    >>> cands, ms = retriever.retrieve("Who won?", mode="hybrid", k=50)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from pipeline.config import FusionMethod, RetrievalMode
from pipeline.errors import ConfigError
from pipeline.index import SearchIndex
from pipeline.models.encoder import BiEncoder
from pipeline.retrieve.fusion import reciprocal_rank_fusion, weighted_fusion


@dataclass
class Candidate:
    """A passage (by position in the index) with each stage's score and 1-based rank."""

    position: int
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Retriever:
    def __init__(self, index: SearchIndex, encoder: BiEncoder | None):
        self.index = index
        self.encoder = encoder

    def _dense_lists(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        if self.encoder is None:
            raise ConfigError("dense and hybrid retrieval need a bi-encoder; use mode 'bm25' or load one.")
        vectors = self.encoder.encode(list(queries))
        return self.index.dense.search(vectors, k)

    def retrieve(
        self,
        query: str,
        *,
        mode: str | RetrievalMode = RetrievalMode.HYBRID,
        k: int = 50,
        fusion: str | FusionMethod = FusionMethod.RRF,
        rrf_k: int = 60,
        dense_weight: float = 0.5,
    ) -> tuple[list[Candidate], dict[str, float]]:
        """The ``k`` best candidates for one query, and the milliseconds each stage took."""
        return self.retrieve_many([query], mode=mode, k=k, fusion=fusion, rrf_k=rrf_k, dense_weight=dense_weight)[0]

    def retrieve_many(
        self,
        queries: Sequence[str],
        *,
        mode: str | RetrievalMode = RetrievalMode.HYBRID,
        k: int = 50,
        fusion: str | FusionMethod = FusionMethod.RRF,
        rrf_k: int = 60,
        dense_weight: float = 0.5,
    ) -> list[tuple[list[Candidate], dict[str, float]]]:
        """:meth:`retrieve` for many queries; dense queries are encoded in one batch."""
        mode, fusion = RetrievalMode.parse(mode), FusionMethod.parse(fusion)
        dense_lists: list[list[tuple[int, float]]] = [[] for _ in queries]
        dense_ms = 0.0
        if mode in (RetrievalMode.DENSE, RetrievalMode.HYBRID) and queries:
            start = time.perf_counter()
            dense_lists = self._dense_lists(queries, k)
            dense_ms = _ms(start) / len(queries)
        out = []
        for query, dense in zip(queries, dense_lists):
            timings: dict[str, float] = {}
            lists: dict[str, list[tuple[int, float]]] = {}
            if mode in (RetrievalMode.BM25, RetrievalMode.HYBRID):
                start = time.perf_counter()
                lists["bm25"] = self.index.bm25.search(query, k)
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
                if fusion is FusionMethod.RRF:
                    fused = reciprocal_rank_fusion({s: [p for p, _ in pairs] for s, pairs in lists.items()}, k=rrf_k)
                else:
                    fused = weighted_fusion(lists, {"bm25": 1.0 - dense_weight, "dense": dense_weight})
                timings["fusion"] = _ms(start)
            else:
                (only,) = lists.values()
                fused = only
            ranked = []
            for rank, (position, score) in enumerate(fused[:k], start=1):
                cand = candidates[position]
                cand.scores["fused"] = float(score)
                cand.ranks["fused"] = rank
                ranked.append(cand)
            out.append((ranked, timings))
        return out

