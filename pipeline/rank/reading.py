"""The reader's evidence in the final order: the paragraphs it read move by how well they answer.

The pipeline reads the first hits of the blended order (``read_paragraphs`` of
the search settings, 5 as shipped) to find the answer. Their best span score (start +
end logit, :class:`~pipeline.read.reader.Reading`) is evidence about the
paragraph too: a paragraph whose best span is weak rarely answers. With
``read_weight`` *w*, each read hit's final score becomes

    final + w * best span score

and the hits are sorted again by it; hits that were not read keep their score.
The answer is then decided on the read hits in their new order (:func:`read_first`).
``scores["read"]`` keeps the span score, so a client can redo the sum. The weight
(0.06 for the blend's 0..1 scale) and the number of paragraphs read (5) were
chosen together on tune articles by ``benchmarks/read_weight.py`` (docs/ranking.md). A fitted ranking policy orders by its
calibrated probability alone, so the reader does not move its hits.

Example::

    >>> read_adjusted([0.75, 0.65, 0.58], [3.5, 8.2, None], weight=0.08)
    [1.03, 1.306, 0.58]
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, TypeVar

from pipeline.results import Hit

T = TypeVar("T")


def read_adjusted(final: Sequence[float], span_scores: Sequence[float | None], weight: float) -> list[float]:
    """``final + weight * span score`` for each hit the reader read (its span score is not ``None``), rounded to 6 places."""
    if len(final) != len(span_scores):
        raise ValueError(f"{len(final)} final scores for {len(span_scores)} span scores")
    return [round(f + weight * s, 6) if s is not None else f for f, s in zip(final, span_scores)]


def read_order(final: Sequence[float], span_scores: Sequence[float | None], weight: float) -> list[int]:
    """Hit indices best first by :func:`read_adjusted`; ties keep the earlier place."""
    adjusted = read_adjusted(final, span_scores, weight)
    return sorted(range(len(adjusted)), key=lambda i: (-adjusted[i], i))


def read_first(order: Sequence[T], was_read: Callable[[T], bool]) -> list[T]:
    """``order`` (a final order) with the read items first, each group in its order: what the answer is decided on.

    After the move the read hits are nearly always the first ones already; a read
    hit whose span score is negative can fall below an unread one, and the answer
    still comes from the read hits.

    Example::

        >>> read_first(["a", "x", "b"], lambda h: h in {"a", "b"})
        ['a', 'b', 'x']
    """
    return [item for item in order if was_read(item)] + [item for item in order if not was_read(item)]


def reading_mismatch(fitted_weight: Any, fitted_paragraphs: Any, read_weight: float,
                     read_paragraphs: int | None) -> str | None:
    """Why something fitted for one reading (``read_weight``, paragraphs read) does not hold for a search's, or ``None``.

    The final-score calibration and the answer policy both record the reading
    they were fitted with; a fitted value of ``None`` was not recorded and is not
    checked.

    Example::

        >>> reading_mismatch(0.06, 5, 0.06, 3)
        'fitted with 5 paragraphs read, this search reads 3'
    """
    if fitted_weight is not None and not math.isclose(read_weight, float(fitted_weight)):
        return f"fitted for read_weight {fitted_weight}, this search uses {read_weight}"
    if fitted_paragraphs is not None and read_paragraphs is not None and int(fitted_paragraphs) != read_paragraphs:
        return f"fitted with {fitted_paragraphs} paragraphs read, this search reads {read_paragraphs}"
    return None


def reorder_by_reading(hits: list[Hit], weight: float) -> None:
    """Move the read hits of one search by their span score, in place (see the module doc).

    A hit was read when it has an ``answer`` (its best span). Its span score goes
    to ``scores["read"]`` and ``scores["final"]`` becomes the adjusted score;
    ``ranks["final"]`` is every hit's new place. Hits without ``scores["final"]``
    (not reranked) are left as they are.
    """
    if not hits or any("final" not in h.scores for h in hits):
        return
    spans = [h.answer.span_score if h.answer is not None else None for h in hits]  # None: not read, or no span score
    adjusted = read_adjusted([h.scores["final"] for h in hits], spans, weight)
    for hit, span, score in zip(hits, spans, adjusted):
        if span is not None:
            hit.scores["read"], hit.scores["final"] = round(float(span), 4), score
    place_by_final(hits)


def place_by_final(hits: list[Hit]) -> None:
    """Sort ``hits`` in place by ``scores["final"]``, best first (ties keep their order), and number ``ranks["final"]``."""
    hits.sort(key=lambda h: -h.scores["final"])
    for place, hit in enumerate(hits, start=1):
        hit.ranks["final"] = place
