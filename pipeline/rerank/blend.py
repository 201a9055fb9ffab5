"""The default final order after reranking: the reranker's probability blended with the fused retrieval score.

``blended = weight * probability + (1 - weight) * min-max(fused score)``, the fused
scores normalised over one question's candidates (so the order depends on how
many candidates there are). ``weight`` 1.0 is the reranker alone, 0.0 the
retrieval order. A fitted ranking policy (:mod:`pipeline.rank.policy`) replaces it
when one is named. This is the one place the formula is written; the pipeline,
the benchmarks and the tests all call it.

Example::

    >>> blended_order([0.9, 0.2, 0.6], [1.0, 3.0, 2.0], weight=0.5)
    [1, 2, 0]
"""

from __future__ import annotations

from typing import Sequence

from pipeline.retrieve.fusion import min_max


def blended_scores(probabilities: Sequence[float], fused: Sequence[float], weight: float) -> list[float]:
    """``weight * probability + (1 - weight) * min-max(fused)`` for each candidate of one question."""
    if len(probabilities) != len(fused):
        raise ValueError(f"{len(probabilities)} probabilities for {len(fused)} fused scores")
    normalised = min_max(list(enumerate(fused)))
    return [weight * p + (1.0 - weight) * normalised[i] for i, p in enumerate(probabilities)]


def blended_order(probabilities: Sequence[float], fused: Sequence[float], weight: float) -> list[int]:
    """Candidate indices best first by :func:`blended_scores`; ties keep the retrieval order (lower index first)."""
    scores = blended_scores(probabilities, fused, weight)
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
