"""Typed results of a search, with plain-dict views for JSON (CLI ``--json``, HTTP)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Stage names used as keys of :attr:`Hit.scores`, :attr:`Hit.ranks` and :attr:`SearchResult.timings`.
STAGES = ("bm25", "dense", "fused", "rerank")


@dataclass
class Answer:
    """An answer span: ``text == hit.text[start:end]``, ``score`` in 0..1."""

    text: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hit:
    """One retrieved passage.

    ``probability`` is the reranker's probability (0..1) that the passage
    answers the question, ``None`` when reranking is off; ``answerable`` is
    ``probability >= threshold`` (``None`` without a reranker). ``scores`` and
    ``ranks`` (1-based) hold every stage that saw the passage: ``bm25``,
    ``dense``, ``fused``, ``rerank``.
    """

    id: str
    title: str
    text: str
    source_id: str
    answerable: bool | None
    probability: float | None
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    answer: Answer | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["answer"] = self.answer.to_dict() if self.answer else None
        return out


@dataclass
class BestAnswer(Answer):
    """The single best answer of a search, with the ``id`` of the hit it was read from."""

    id: str = ""


@dataclass
class SearchResult:
    """Hits best first, per-stage timings in milliseconds, and the settings that produced them."""

    query: str
    hits: list[Hit]
    timings: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    answer: BestAnswer | None = None

    @property
    def answerable_hits(self) -> list[Hit]:
        return [h for h in self.hits if h.answerable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "hits": [h.to_dict() for h in self.hits],
            "answer": self.answer.to_dict() if self.answer else None,
            "timings": dict(self.timings),
            "settings": dict(self.settings),
        }
