"""Typed results of a search, with plain-dict views for JSON (CLI ``--json``, HTTP)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Stage names used as keys of :attr:`Hit.scores`, :attr:`Hit.ranks` and :attr:`SearchResult.timings`.
STAGES = ("bm25", "dense", "fused", "rerank", "final")


@dataclass
class Answer:
    """An answer span: ``text == hit.text[start:end]``.

    ``score`` (0..1) is the span's share of the evidence of every span read for
    the search (paragraph probability and span score together, see
    :mod:`pipeline.read.answers`), so it compares across paragraphs;
    ``span_score`` is the reader's own score of the span (start + end logit,
    relative to the null score for no-answer models), ``None`` where unknown.
    """

    text: str
    start: int
    end: int
    score: float
    span_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hit:
    """One retrieved paragraph (a long paragraph's best window: ``id`` names the window, ``source_id`` the paragraph).

    ``probability`` is the probability (0..1) that the passage answers the
    question: the final score through the calibration fitted for the reranker
    (:mod:`pipeline.rank.calibration`; without one, the reranker's own
    probability), or a fitted ranking policy's; ``None``
    when reranking is off; ``answerable`` is
    ``probability >= threshold`` (``None`` without a reranker). ``scores`` and
    ``ranks`` (1-based) hold every stage that saw the passage, each named for
    what it is: ``bm25``, ``dense`` and ``fused`` (score and rank in that list;
    a reranked search gives every hit its bi-encoder similarity as ``dense``,
    also a hit the dense list missed, which then has no ``dense`` rank),
    ``rerank`` (the reranker's probability, and the paragraph's rank by it
    alone), ``read`` (the reader's best span score, on the hits it read) and
    ``final`` (the score that orders the hits, and the hit's place).
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
class Support:
    """One paragraph that gives an answer: where in it, and its share of the answer's evidence (0..1)."""

    id: str
    start: int
    end: int
    score: float


@dataclass
class BestAnswer(Answer):
    """The best answer of a search: the ``id`` (and span) of its strongest paragraph, every paragraph in ``support``.

    ``score`` is the answer's share of all the evidence read (the sum over the
    paragraphs that give the same normalised answer).
    """

    id: str = ""
    support: list[Support] = field(default_factory=list)


@dataclass
class SearchResult:
    """Hits best first, per-stage timings in milliseconds, and the settings that produced them.

    ``answer`` is the best answer, or ``None``; then ``no_answer_reason`` says
    why (nothing read, the reader found no span, or the search abstained: no
    paragraph here answers the question). ``answerability`` (0..1) is the
    abstention model's score of "some paragraph here answers" (``None`` when no
    answer policy applies); ``candidate`` is the best answer even when the
    search abstained, for a user who asks to see it. ``evidence`` holds what
    the answerability was computed from: the answer policy's features of this
    search (names in :data:`pipeline.read.policy.FEATURES`; NaN where not
    measured), empty when nothing was read or no candidate was found; ``qa-search
    fit-answers`` fits a policy on them.
    """

    query: str
    hits: list[Hit]
    timings: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    answer: BestAnswer | None = None
    answerability: float | None = None
    no_answer_reason: str | None = None
    candidate: BestAnswer | None = None
    evidence: dict[str, float] = field(default_factory=dict)

    @property
    def answerable_hits(self) -> list[Hit]:
        return [h for h in self.hits if h.answerable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "hits": [h.to_dict() for h in self.hits],
            "answer": self.answer.to_dict() if self.answer else None,
            "answerability": self.answerability,
            "no_answer_reason": self.no_answer_reason,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            # JSON has no NaN: an unmeasured feature is null
            "evidence": {k: (v if math.isfinite(v) else None) for k, v in self.evidence.items()},
            "timings": dict(self.timings),
            "settings": dict(self.settings),
        }
