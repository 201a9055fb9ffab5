"""The default final order after reranking: the reranker's probability blended with the retrieval evidence.

``blended = weight * probability + (1 - weight) * fused / best fused + similarity_weight * similarity``:
each candidate's fused score is taken relative to the best fused score of the
question, the first paragraph retrieval found, which is a candidate at every
depth; ``similarity`` is the bi-encoder's similarity of question and paragraph
(``scores["dense"]``, which a reranked search gives every candidate, also those
the dense list missed: :meth:`pipeline.retrieve.Retriever.retrieve_many`). A
paragraph's blended score therefore does not depend on how many candidates were
reranked (the pipeline fuses each retriever's list at a fixed depth,
:data:`pipeline.retrieve.retriever.LIST_DEPTH`, so the fused scores do not
either). ``weight`` 1.0 with ``similarity_weight`` 0 is the reranker alone,
``weight`` 0.0 the retrieval order. The fused score is a rank-like mix of two
normalised lists; the similarity is the bi-encoder's own measure, the strongest
single sign that a paragraph does not answer (docs/answers.md), so it is weighed
on its own: ``similarity_weight`` 0.5 was chosen on tune articles
(``benchmarks/blend_dense.py``, docs/ranking.md). A fitted ranking policy
(:mod:`pipeline.rank.policy`) replaces the blend when one is named. This is the
one place the formula is written; the pipeline, the benchmarks and the tests all
call it.

Example::

    >>> blended_order([0.9, 0.2, 0.6], [1.0, 4.0, 2.0], weight=0.5)
    [1, 0, 2]
    >>> [round(s, 3) for s in blended_scores([0.9, 0.2], [1.0, 4.0], 0.5, similarities=[0.7, 0.3], similarity_weight=0.5)]
    [0.925, 0.75]
"""

from __future__ import annotations

from typing import Sequence

#: The blend's formula, recorded by what is fitted on its scores (a final-score calibration) and checked when
#: it is loaded. Files written before it was named were fitted on "min-max over candidates", and before the
#: similarity was weighed on "relative to the best fused score".
FORMULA = "relative to the best fused score, plus similarity_weight x the bi-encoder similarity"


def describe(rerank_weight: float, similarity_weight: float) -> str:
    """How a blend orders, in words (what a search's ``settings["policy"]`` and an evaluation record)."""
    return f"blend (rerank_weight {rerank_weight}, similarity_weight {similarity_weight})"


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
                   best: float | None = None, *, similarities: Sequence[float | None] | None = None,
                   similarity_weight: float = 0.0) -> list[float]:
    """``weight * probability + (1 - weight) * fused / best + similarity_weight * similarity`` per candidate of one question.

    ``best`` is the question's best fused score; by default the highest of ``fused``
    (the candidates always include it). A similarity that is ``None`` (or
    ``similarities`` left out: a BM25 search) adds nothing.
    """
    if len(probabilities) != len(fused):
        raise ValueError(f"{len(probabilities)} probabilities for {len(fused)} fused scores")
    if similarities is not None and len(similarities) != len(fused):
        raise ValueError(f"{len(similarities)} similarities for {len(fused)} fused scores")
    relative = relative_fused(fused, best)
    sims = [0.0 if s is None else float(s) for s in similarities] if similarities is not None else [0.0] * len(fused)
    return [weight * p + (1.0 - weight) * r + similarity_weight * c for p, r, c in zip(probabilities, relative, sims)]


def blended_order(probabilities: Sequence[float], fused: Sequence[float], weight: float, *,
                  similarities: Sequence[float | None] | None = None, similarity_weight: float = 0.0) -> list[int]:
    """Candidate indices best first by :func:`blended_scores`; ties keep the retrieval order (lower index first)."""
    scores = blended_scores(probabilities, fused, weight, similarities=similarities, similarity_weight=similarity_weight)
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
