"""How many of a question's candidates the reranker scores: fewer when the first stages agree.

When BM25 and the bi-encoder put the same paragraph first, hybrid retrieval is
rarely wrong about it (SQuAD tune articles: the fused #1 is the gold paragraph
for most such questions, docs/ranking.md "Latency budget"), so the reranker
scores only the fused top ``agreed_candidates`` (never fewer than ``top_k``, so
every hit shown is reranked); otherwise the usual ``candidates``. This is the
early stop of the latency budget: the cross-encoder's time is most of a search's.

Example::

    >>> from pipeline.config import SearchSettings
    >>> from pipeline.retrieve import Candidate
    >>> cands = [Candidate(0, ranks={"bm25": 1, "dense": 1, "fused": 1}), Candidate(1, ranks={"bm25": 2, "fused": 2})]
    >>> first_stages_agree(cands, source_of=lambda position: f"doc#{position}")
    True
    >>> rerank_depth(cands, SearchSettings(candidates=20, agreed_candidates=10, top_k=10), lambda p: f"doc#{p}")
    10
"""

from __future__ import annotations

from typing import Callable, Sequence

from pipeline.config import RetrievalMode, SearchSettings
from pipeline.retrieve import Candidate


def first_stages_agree(candidates: Sequence[Candidate], source_of: Callable[[int], str]) -> bool:
    """Whether BM25's first candidate and the bi-encoder's first come from the same source paragraph."""
    firsts: dict[str, str] = {}
    for cand in candidates:
        for stage in ("bm25", "dense"):
            if cand.ranks.get(stage) == 1:
                firsts[stage] = source_of(cand.position)
    return len(firsts) == 2 and firsts["bm25"] == firsts["dense"]


def rerank_depth(candidates: Sequence[Candidate], cfg: SearchSettings, source_of: Callable[[int], str]) -> int:
    """How many of ``candidates`` (fused order) the reranker scores under ``cfg``."""
    depth = len(candidates)
    if cfg.agreed_candidates and cfg.mode is RetrievalMode.HYBRID and first_stages_agree(candidates, source_of):
        depth = min(depth, max(cfg.agreed_candidates, cfg.top_k))
    return depth
