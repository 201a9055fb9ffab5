"""From read paragraphs to one answer, or to "no paragraph here answers this".

**Evidence.** The pipeline reads the top :attr:`~pipeline.read.policy.AnswerPolicy.paragraphs` hits
in the blended order, before their span scores move them (whether or not they
pass the answerable threshold). Every span the reader proposes in hit *p* (:class:`~pipeline.read.reader.Reading`)
gets the weight

    w(p, span) = paragraph_weight * log P(p) + span_score / temperature

where ``P(p)`` is the hit's probability (the paragraph's probability of
answering; 1 without a reranker) and ``span_score`` is start + end logit
(relative to the null score for no-answer models), a number that means the
same in every paragraph. A softmax over all spans of all read paragraphs turns
the weights into shares of the evidence (they sum to 1 over the search).

**Aggregation.** Spans whose text normalises alike (official SQuAD
normalisation) are one answer: its score is the sum of their shares, and every
paragraph that gives it is listed in ``support`` (its best span there and its
share). The best answer is the one with most evidence, as open-domain QA
systems aggregate.

**Abstention.** :func:`answer_features` measures one search: the top
paragraph's probability and its lead over the next, the best answer's share and
how many read paragraphs agree on it, its span score, whether the reranker's
top is the retriever's top, and what the answer's paragraph says of the
question (:mod:`pipeline.read.evidence`: how much of its wording the paragraph
and sentence hold, how rare a missing term is, how close the question is to the
top paragraph and to the paragraph's closest sentence in the bi-encoder's
space). The answer policy (:mod:`pipeline.read.policy`, a logistic regression
fitted by ``benchmarks/answers_fit.py`` on SQuAD v2.0 questions of the tune
articles with grouped cross-validation by article) turns them into
``answerability``; below its threshold :func:`decide` abstains and says which
features weighed most against answering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.read.evidence import (
    COVERED,
    LexicalEvidence,
    Similarity,
    dense_similarity,
    sentence_similarity,
)
from pipeline.read.normalize import normalize_answer
from pipeline.read.policy import AnswerPolicy
from pipeline.read.reader import Reading
from pipeline.results import Answer, BestAnswer, Hit, Support

_FLOOR = 1e-6  # probabilities are clipped here before the log


@dataclass
class Candidate:
    """One distinct (normalised) answer with the evidence for it, best paragraph first in ``support``."""

    text: str
    key: str
    score: float
    span_score: float
    support: list[Support]


@dataclass
class Decision:
    """The answer of one search: ``answer`` (``None`` when abstaining), the best ``candidate``, why not.

    ``features``: what ``answerability`` was computed from (:func:`answer_features`; empty when no
    candidate was found).
    """

    answer: BestAnswer | None
    candidate: BestAnswer | None
    answerability: float | None
    reason: str | None
    candidates: list[Candidate]
    hit_answers: list[Answer | None]
    features: dict[str, float] = field(default_factory=dict)


def aggregate(hits: Sequence[Hit], readings: Sequence[Reading], policy: AnswerPolicy) -> tuple[list[Candidate], list[Answer | None]]:
    """Distinct answers over the read hits, most evidence first, and each hit's own best span (see the module doc)."""
    rows: list[tuple[int, float, Any]] = []  # (hit index, weight, span)
    for h, (hit, reading) in enumerate(zip(hits, readings)):
        prior = 0.0 if hit.probability is None else policy.paragraph_weight * math.log(max(reranker_probability(hit), _FLOOR))
        for span in reading.spans:
            rows.append((h, prior + span.score / policy.temperature, span))
    hit_answers: list[Answer | None] = [None] * len(hits)
    if not rows:
        return [], hit_answers
    weights = np.array([w for _, w, _ in rows])
    shares = np.exp(weights - weights.max())
    shares /= shares.sum()
    groups: dict[str, dict[int, list[tuple[float, Any]]]] = {}
    for (h, _, span), share in zip(rows, shares):
        key = normalize_answer(span.text) or span.text.strip().lower()
        groups.setdefault(key, {}).setdefault(h, []).append((float(share), span))
        best = hit_answers[h]
        if best is None or share > best.score:
            hit_answers[h] = Answer(span.text, span.start, span.end, float(share), float(span.score))
    candidates = []
    for key, by_hit in groups.items():
        support = []
        for h, items in by_hit.items():
            top_share, top_span = max(items, key=lambda item: item[0])
            support.append((sum(s for s, _ in items), top_share, h, top_span))
        support.sort(key=lambda item: (-item[0], item[2]))
        first = support[0][3]
        candidates.append(
            Candidate(
                text=first.text,
                key=key,
                score=float(sum(s[0] for s in support)),
                span_score=float(max(s[3].score for s in support)),
                support=[Support(hits[h].id, span.start, span.end, round(total, 6)) for total, _, h, span in support],
            )
        )
    candidates.sort(key=lambda c: -c.score)
    return candidates, hit_answers


def reranker_probability(hit: Hit) -> float:
    """The reranker's own probability of a hit: what the shipped answer policy was fitted on.

    ``hit.probability`` is the ranking policy's (pipeline/rank); until the answer
    policy is refitted on it, the evidence and the abstention model read the
    reranker's probability (``scores["rerank"]``), as when they were fitted.
    """
    return float(hit.scores.get("rerank", hit.probability or 0.0))


def _retrieval_rank(hit: Hit) -> int | None:
    for stage in ("fused", "bm25", "dense"):
        if stage in hit.ranks:
            return hit.ranks[stage]
    return None


def answer_features(
    hits: Sequence[Hit], candidates: Sequence[Candidate], read: int, question: str = "",
    lexical: LexicalEvidence | None = None, question_form: Callable[[str], float] | None = None,
    similarity: Similarity | None = None,
) -> dict[str, float]:
    """The abstention model's inputs for one search (names in :data:`FEATURES`).

    ``question`` (and the hits' texts) feed the lexical features; without them
    those features read as a fully covered question. ``similarity`` (the
    bi-encoder's) gives ``sentence_similarity``; without it that is NaN
    (unmeasured: no pull). ``question_form`` scores the
    question's wording (:meth:`AnswerPolicy.question_form_score`); without it or
    a question, ``question_form`` is NaN (unmeasured: no pull).
    """
    probs = [reranker_probability(h) if h.probability is not None else 0.0 for h in hits]
    top = candidates[0] if candidates else None
    ids = {s.id for s in top.support} if top else set()
    by_id = {h.id: p for h, p in zip(hits, probs)}
    lexical_features = dict(COVERED)
    closest = math.nan
    if top is not None and question:
        first = top.support[0]
        text = next((h.text for h in hits if h.id == first.id), "")
        if text:
            lexical_features = (lexical or LexicalEvidence()).features(question, text, first.start, first.end)
            closest = sentence_similarity(question, text, similarity)
    return {
        "probability": probs[0] if probs else 0.0,
        "probability_gap": (probs[0] - probs[1]) if len(probs) > 1 else (probs[0] if probs else 0.0),
        "share": top.score if top else 0.0,
        "agreement": len(top.support) / max(read, 1) if top else 0.0,
        "span_score": top.span_score if top else 0.0,
        "answer_probability": max((by_id.get(i, 0.0) for i in ids), default=0.0),
        "top_agrees": 1.0 if hits and _retrieval_rank(hits[0]) == 1 else 0.0,
        "answer_in_top": 1.0 if hits and hits[0].id in ids else 0.0,
        **lexical_features,
        "dense_similarity": dense_similarity(hits),
        "sentence_similarity": closest,
        "question_form": question_form(question) if question_form is not None and question else math.nan,
    }


def _given_by(support: int, decided_on: int) -> str:
    """Which of the paragraphs the answer is decided on give the candidate, in words."""
    if decided_on == 1:
        return "from the first paragraph"
    return f"given by {support} of the first {decided_on} paragraphs"


def _below(score: float, threshold: float) -> str:
    """"0.19 is below 0.38": to two places, or as many more as it takes to tell them apart (0.3737 is below 0.3738)."""
    for places in (2, 3, 4, 5, 6):
        if f"{score:.{places}f}" != f"{threshold:.{places}f}":
            break
    return f"{score:.{places}f} is below {threshold:.{places}f}"


def best_answer_of(candidate: Candidate) -> BestAnswer:
    """The :class:`BestAnswer` of a candidate: text and span of its strongest paragraph, every paragraph in support."""
    first = candidate.support[0]
    return BestAnswer(
        text=candidate.text,
        start=first.start,
        end=first.end,
        score=round(candidate.score, 6),
        span_score=round(candidate.span_score, 4),
        id=first.id,
        support=list(candidate.support),
    )


def decide(
    hits: Sequence[Hit], readings: Sequence[Reading], policy: AnswerPolicy, *, abstain: bool = True, question: str = "",
    lexical: LexicalEvidence | None = None, threshold: float | None = None, similarity: Similarity | None = None,
) -> Decision:
    """Aggregate the read ``hits`` (``readings[i]`` is ``hits[i]``'s) and decide whether to answer ``question``.

    Abstains when the answerability is below ``threshold`` (``None``: the policy's).
    ``similarity``: the bi-encoder's (:func:`sentence_similarity`), asked only when the policy reads it.
    """
    read_hits = list(hits[: len(readings)])
    candidates, hit_answers = aggregate(read_hits, readings, policy)
    if not candidates:
        reason = "The reader found no answer span in the paragraphs it read." if read_hits else "No paragraph was read."
        return Decision(None, None, None, reason, [], hit_answers)
    candidate = best_answer_of(candidates[0])
    features = answer_features(hits, candidates, len(read_hits), question, lexical, policy.question_form_score,
                               similarity if "sentence_similarity" in policy.features else None)
    score = policy.answerability(features)
    limit = policy.threshold if threshold is None else threshold
    if abstain and policy.features and limit is not None and score is not None and score < limit:
        against = policy.weighed_against(features)
        reason = (
            f"No paragraph here answers this: answerability {_below(score, limit)} "
            f"(best candidate {candidate.text!r}, {_given_by(len(candidate.support), len(read_hits))}"
            + (f"; against it most: {against}" if against else "") + ")."
        )
        return Decision(None, candidate, score, reason, candidates, hit_answers, features)
    return Decision(candidate, candidate, score, None, candidates, hit_answers, features)
