"""Fitting a ranking policy on questions with known gold paragraphs (``qa-search fit-policy``).

The pipeline searches each question as usual, ``candidates`` deep, and every hit
becomes one :class:`Row`: the policy's features (:func:`pipeline.rank.policy.features`
of its reranker probability, retrieval scores and ranks) and a label, 1 for the
question's gold paragraph and 0 for the others. scikit-learn's
``LogisticRegression`` fits the weights. Fit on tune questions only (SQuAD dev
articles 0-23 here) and measure on others.

Example::

    >>> rows = rows_of(results, golds)                                            # doctest: +SKIP
    >>> policy = fit_policy(rows, reranker=qa.reranker.name, names=("rerank_logit", "fused"))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.rank.policy import FEATURES, Policy, features

#: Weighs nothing but reads the retrieval features, so a search with it fuses each retriever's list
#: ``LIST_DEPTH`` deep, as a search with a fitted policy does: the rows get the fused scores a policy sees.
COLLECTING = Policy(reranker=None, coef={"fused": 0.0}, intercept=0.0, fitted={"note": "collecting rows"})


@dataclass(frozen=True)
class Row:
    """One candidate paragraph of one question: its features, its label, where retrieval put it."""

    question_id: str
    source_id: str
    label: int
    fused_rank: int
    features: dict[str, float]


def collect(qa, questions: Sequence, depth: int, *, batch_size: int = 16,
            progress: bool = True) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Search ``questions`` with ``qa`` as a fitted policy's search does, ``depth`` candidates, no reading.

    Returns ``(question id, gold paragraph id, hits as dicts)`` for every question whose
    gold paragraph is in the index; the hits keep the reranker's own probability
    (``scores["rerank"]``) and every retrieval score and rank.
    """
    from tqdm.auto import tqdm

    from pipeline.eval.evaluation import gold_paragraphs

    if qa.reranker is None:
        raise ConfigError("Fitting a ranking policy needs a reranker; do not pass --no-rerank.")
    golds, _ = gold_paragraphs(qa.index, questions)
    kept = [q for q in questions if q.id in golds]
    if not kept:
        raise ConfigError("None of the chosen questions has its gold paragraph in the index.")
    out = []
    saved, qa.policy = qa.policy, COLLECTING
    try:
        for start in tqdm(range(0, len(kept), batch_size), desc="questions", unit="batch", disable=not progress):
            batch = kept[start : start + batch_size]
            results = qa.search_many([q.text for q in batch], candidates=depth, top_k=depth, read=False,
                                     agreed_candidates=0)
            out.extend((q.id, golds[q.id], [h.to_dict() for h in r.hits]) for q, r in zip(batch, results))
    finally:
        qa.policy = saved
    return out


def row_of(question_id: str, gold: str, hit: Mapping[str, Any]) -> Row:
    """The row of one hit (a :class:`~pipeline.results.Hit` as a dict: ``source_id``, ``scores``, ``ranks``)."""
    scores, ranks = hit["scores"], hit["ranks"]
    return Row(question_id, hit["source_id"], int(hit["source_id"] == gold), int(ranks.get("fused", 0)),
               features(scores["rerank"], scores, ranks))


def rows_of(results: Iterable[tuple[str, str, Sequence[Mapping[str, Any]]]]) -> list[Row]:
    """Rows of ``(question id, gold paragraph id, hits)`` triples."""
    return [row_of(qid, gold, hit) for qid, gold, hits in results for hit in hits]


def matrix(rows: Sequence[Row], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([[r.features[n] for n in names] for r in rows], dtype=np.float64),
            np.array([r.label for r in rows], dtype=int))


def fit_policy(rows: Sequence[Row], *, reranker: str, names: Sequence[str] = FEATURES, C: float = 1.0,
               fusion: str | None = None, fitted: dict[str, Any] | None = None) -> Policy:
    """A :class:`Policy` over the features ``names``, fitted by logistic regression on ``rows``."""
    from sklearn.linear_model import LogisticRegression

    x, y = matrix(rows, names)
    if len(set(y.tolist())) < 2:
        raise ConfigError("Fitting a ranking policy needs both gold and non-gold candidates; use more questions.")
    model = LogisticRegression(C=C, max_iter=5000).fit(x, y)
    info = {"rows": int(len(rows)), "questions": len({r.question_id for r in rows}), "positives": int(y.sum()),
            "C": C, "date": _dt.date.today().isoformat()}
    info.update(fitted or {})
    return Policy(reranker=reranker, coef={n: round(float(w), 6) for n, w in zip(names, model.coef_[0])},
                  intercept=round(float(model.intercept_[0]), 6), fusion=fusion, fitted=info)
