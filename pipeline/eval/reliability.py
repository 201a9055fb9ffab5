"""Reliability of ``Hit.probability``: does a paragraph shown with probability p answer the question p of the time?

Each shown hit of an answerable question is a prediction (its probability) of a
label: "this is the paragraph the question was written on". A paragraph that
also answers but is not the gold one counts as a miss, so the shares are lower
bounds. Hits are binned by probability (equal-width bins); expected
calibration error (ECE, bins weighted by hits) comes from torchmetrics'
``binary_calibration_error``. :func:`reliability_metrics` reports it over all
shown hits, the first three places and the first hit.

Example::

    >>> import numpy as np
    >>> rows = reliability_bins(np.array([0.05, 0.15, 0.95, 0.9]), np.array([0, 0, 1, 1]), bins=2)
    >>> [(r["hits"], r["gold_share"]) for r in rows]
    [(2, 0.0), (2, 1.0)]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Per equal-width bin of probability: its bounds, how many hits, their mean probability and gold share."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "hits": int(inside.sum()),
                     "mean_probability": float(probs[inside].mean()) if inside.any() else None,
                     "gold_share": float(labels[inside].mean()) if inside.any() else None})
    return rows


def calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float | None:
    """Expected calibration error (l1, equal-width bins); ``None`` without hits."""
    if len(probs) == 0:
        return None
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    return float(binary_calibration_error(torch.tensor(np.asarray(probs, dtype=np.float32)),
                                          torch.tensor(np.asarray(labels, dtype=np.int64)), n_bins=bins, norm="l1"))


def reliability_metrics(probs: Sequence[float], labels: Sequence[int], places: Sequence[int],
                        bins: int = 10) -> dict[str, Any]:
    """ECE over all shown hits, the first three places (``places`` 1-based) and the first hit, and the bins of all."""
    p, y, at = np.asarray(probs, dtype=float), np.asarray(labels, dtype=int), np.asarray(places, dtype=int)
    top3, first = at <= 3, at == 1
    return {"hits": int(len(p)), "bins_count": bins,
            "ece_shown": calibration_error(p, y, bins),
            "ece_top3": calibration_error(p[top3], y[top3], bins),
            "ece_first": calibration_error(p[first], y[first], bins),
            "bins": reliability_bins(p, y, bins)}
