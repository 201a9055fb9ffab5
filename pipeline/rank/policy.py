"""The ranking policy: one calibrated probability that a paragraph answers the question; it orders and flags hits.

``P(answers) = sigmoid(intercept + sum(coef[f] * feature[f]))`` over :data:`FEATURES`,
each computed from one paragraph alone (:func:`features`):

* ``rerank_probability``: the reranker's probability (0..1); ``rerank_logit``: its log-odds
  (clipped to ±:data:`LOGIT_CLIP`);
* ``fused``: the hybrid fusion's score; ``fused_log_rank``: log of its rank in the fused list;
* ``bm25_log_rank`` / ``dense_log_rank``: log of the rank in each retriever's list
  (``log(LIST_DEPTH + 1)`` when the paragraph is not in it), ``bm25_found`` / ``dense_found`` (1/0);
* ``dense_cosine``: the bi-encoder's cosine (0 when not in the dense list).

None is normalised over the candidate list, and each retriever's list is
:data:`~pipeline.retrieve.retriever.LIST_DEPTH` deep before fusion, so a paragraph's
probability does not depend on how many candidates were reranked.

A policy is fitted for one reranker and one fusion (``qa-search fit-policy``,
:mod:`pipeline.rank.fit`) and stored as a small JSON file; it is used when the
``policy`` setting names it (:func:`find_policy`). By default no policy is used:
the fitted one did worse on held-out questions than the blend of ``rerank_weight``
(docs/ranking.md), which stays the default order.

Example::

    >>> p = Policy(reranker="r", coef={"rerank_logit": 1.0, "fused": 2.0}, intercept=-1.0)
    >>> round(p.probability(0.5, {"fused": 0.5}, {}), 3)
    0.5
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError
from pipeline.files import write_json
from pipeline.retrieve.retriever import LIST_DEPTH

logger = logging.getLogger(__name__)

FEATURES = ("rerank_probability", "rerank_logit", "fused", "fused_log_rank", "bm25_log_rank", "bm25_found", "dense_log_rank",
            "dense_found", "dense_cosine")
#: Reranker log-odds are clipped here so a saturated probability (0 or 1) stays finite.
LOGIT_CLIP = 12.0
FORMAT = 1


def logit(probability: float) -> float:
    """The log-odds of ``probability``, clipped to ±:data:`LOGIT_CLIP`."""
    p = min(max(float(probability), 1e-12), 1.0 - 1e-12)
    return max(-LOGIT_CLIP, min(LOGIT_CLIP, math.log(p / (1.0 - p))))


def features(probability: float, scores: Mapping[str, float], ranks: Mapping[str, int]) -> dict[str, float]:
    """The policy's features of one paragraph: the reranker's probability, its retrieval scores and ranks."""
    absent = math.log(LIST_DEPTH + 1)
    out = {"rerank_probability": float(probability), "rerank_logit": logit(probability),
           "fused": float(scores.get("fused", 0.0))}
    out["fused_log_rank"] = math.log(ranks["fused"]) if "fused" in ranks else absent
    for stage in ("bm25", "dense"):
        rank = ranks.get(stage)
        out[f"{stage}_log_rank"] = absent if rank is None else math.log(rank)
        out[f"{stage}_found"] = 0.0 if rank is None else 1.0
    # as fitted: 0 for a paragraph the dense list missed (a reranked search gives it its similarity all the same)
    out["dense_cosine"] = float(scores.get("dense", 0.0)) if "dense" in ranks else 0.0
    return out


@dataclass(frozen=True)
class Policy:
    """A logistic model over some of :data:`FEATURES`; :meth:`probability` is the calibrated probability."""

    reranker: str | None
    coef: Mapping[str, float]
    intercept: float
    fusion: str | None = None
    fitted: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

    def __post_init__(self) -> None:
        unknown = set(self.coef) - set(FEATURES)
        if unknown:
            raise ConfigError(f"Unknown ranking policy feature(s) {', '.join(sorted(unknown))}; "
                              f"valid values: {', '.join(FEATURES)}.")

    @classmethod
    def reranker_only(cls, reranker: str | None = None) -> "Policy":
        """The reranker's own probability (weight 1 on its logit, nothing else): the fallback."""
        return cls(reranker=reranker, coef={"rerank_logit": 1.0}, intercept=0.0,
                   fitted={"note": "reranker probability alone"})

    @property
    def is_reranker_only(self) -> bool:
        return dict(self.coef) == {"rerank_logit": 1.0} and self.intercept == 0.0

    def score(self, values: Mapping[str, float]) -> float:
        """The probability (0..1) that a paragraph with these feature ``values`` answers."""
        z = self.intercept + sum(w * float(values[name]) for name, w in self.coef.items())
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def probability(self, reranker_probability: float, scores: Mapping[str, float], ranks: Mapping[str, int]) -> float:
        """:meth:`score` of one paragraph from the reranker's probability and its retrieval scores and ranks."""
        if self.is_reranker_only:
            return float(reranker_probability)
        return self.score(features(reranker_probability, scores, ranks))

    def describe(self) -> str:
        """What orders the hits, as recorded in search results."""
        if self.is_reranker_only:
            return "reranker probability alone"
        return f"policy fitted for {Path(self.reranker).name if self.reranker else 'any reranker'}"

    def matches(self, reranker: str) -> bool:
        """Whether this policy was fitted for ``reranker`` (same name, or the same last path component)."""
        if self.reranker is None:
            return True
        return self.reranker == reranker or Path(self.reranker).name == Path(reranker.rstrip("/")).name

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["coef"] = dict(self.coef)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON (a temporary file renamed into place)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Read a policy file (plain JSON, no code); a missing or malformed file is a :class:`ConfigError` naming it."""
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format", FORMAT) != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, this version reads {FORMAT}")
            coef = {str(k): float(v) for k, v in data["coef"].items()}
            if not all(math.isfinite(v) for v in coef.values()) or not math.isfinite(float(data["intercept"])):
                raise ValueError("a weight is not a finite number")
            return cls(reranker=data.get("reranker"), coef=coef, intercept=float(data["intercept"]),
                       fusion=data.get("fusion"), fitted=dict(data.get("fitted") or {}))
        except FileNotFoundError:
            raise ConfigError(f"No ranking policy file at {path}; fit one with: qa-search fit-policy --out {path}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"The ranking policy {path} is not a valid policy file ({exc}).") from None


HINT = "fit one with: qa-search fit-policy --index ... --questions ... --reranker ... --out policy.json, then --policy policy.json"


def find_policy(spec: str | None, reranker: str, fusion: str | None = None) -> Policy | None:
    """The fitted policy in the JSON file ``spec`` names, if any.

    ``None`` (the default) returns ``None``: the pipeline orders by the blend of
    ``rerank_weight`` (see docs/ranking.md for why). ``"none"`` is the reranker's
    probability alone. A policy fitted for another reranker falls back to that
    too, with a warning; one fitted with another ``fusion`` is used with a warning
    (its ``fused`` weight expects that fusion's scale).
    """
    if spec is None:
        return None
    if spec == "none":
        return Policy.reranker_only(reranker)
    path = Path(spec).expanduser()
    policy = Policy.load(path)
    if not policy.matches(reranker):
        logger.warning("The ranking policy %s was fitted for the reranker %s, not %s: ordering by the reranker's "
                       "probability alone; %s.", path, policy.reranker, reranker, HINT)
        return Policy.reranker_only(reranker)
    if fusion and policy.fusion and policy.fusion != fusion and "fused" in policy.coef:
        logger.warning("The ranking policy %s was fitted with %s fusion, this search uses %s: its fused weight "
                       "expects the other scale; refit it (%s).", path, policy.fusion, fusion, HINT)
    return policy
