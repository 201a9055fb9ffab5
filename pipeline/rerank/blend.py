"""The default final order after reranking: the reranker's probability blended with the fused retrieval score.

``blended = weight * probability + (1 - weight) * fused / best fused``: each
candidate's fused score is taken relative to the best fused score of the
question, the first paragraph retrieval found, which is a candidate at every
depth. A paragraph's blended score therefore does not depend on how many
candidates were reranked (the pipeline fuses each retriever's list at a fixed
depth, :data:`pipeline.retrieve.retriever.LIST_DEPTH`, so the fused scores do
not either). ``weight`` 1.0 is the reranker alone, 0.0 the retrieval order. A
fitted ranking policy (:mod:`pipeline.rank.policy`) replaces it when one is
named. This is the one place the formula is written; the pipeline, the
benchmarks and the tests all call it.

Example::

    >>> blended_order([0.9, 0.2, 0.6], [1.0, 4.0, 2.0], weight=0.5)
    [1, 0, 2]
"""

from __future__ import annotations

from typing import Sequence

#: The blend's formula, recorded by what is fitted on its scores (a final-score calibration) and checked when
#: it is loaded. Files written before it was named were fitted on "min-max over candidates".
FORMULA = "relative to the best fused score"


def relative_fused(fused: Sequence[float], best: float | None = None) -> list[float]:
    """Each fused score divided by ``best`` (default: the highest of ``fused``); all 0.0 when ``best`` is not positive.

    Every fusion the product offers, and BM25 alone, scores 0 or more; a dense-only
    search whose best cosine is not positive has no retrieval evidence to add.
    """
    if not fused:
        return []
    top = max(fused) if best is None else best
    if top <= 0:
        return [0.0] * len(fused)
    return [max(0.0, f) / top for f in fused]


def blended_scores(probabilities: Sequence[float], fused: Sequence[float], weight: float,
                   best: float | None = None) -> list[float]:
    """``weight * probability + (1 - weight) * fused / best`` for each candidate of one question.

    ``best`` is the question's best fused score; by default the highest of ``fused``
    (the candidates always include it).
    """
    if len(probabilities) != len(fused):
        raise ValueError(f"{len(probabilities)} probabilities for {len(fused)} fused scores")
    relative = relative_fused(fused, best)
    return [weight * p + (1.0 - weight) * r for p, r in zip(probabilities, relative)]


def blended_order(probabilities: Sequence[float], fused: Sequence[float], weight: float) -> list[int]:
    """Candidate indices best first by :func:`blended_scores`; ties keep the retrieval order (lower index first)."""
    scores = blended_scores(probabilities, fused, weight)
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
