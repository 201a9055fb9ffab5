"""``Hit.probability`` under the blend: the score that orders the hits, calibrated on tune questions.

A cross-encoder's sigmoid is not a probability of anything measured: the offline
stand-in shows 0.5-0.9 on paragraphs that are the gold one far less often than
that (docs/evaluation.md, "Reliability"). Two kinds of calibration file exist,
both plain JSON (no code), both Platt scaling fitted by logistic regression:

* **Final score** (``"kind": "final-score"``, the default): the score that orders
  the hits (the blend of ``rerank_weight`` and ``similarity_weight``, plus the reader's move on the hits it
  read, ``scores["final"]``) and one more feature, ``first`` (1 for the first hit,
  else 0)::

      P = sigmoid(w_final * final + w_first * [first] + intercept)

  With ``w_final, w_first >= 0`` (checked on load) a hit shown above another never
  gets a lower probability, so the order and the ``answerable`` flags come from
  one score. Two sets of weights are stored, fitted on the same tune questions:
  one for searches that read (the reader's move adds ``read_weight`` times a
  span score to the first hits) and one for searches that do not. They hold only
  for the ``rerank_weight``, ``similarity_weight``, ``read_weight`` and ``read_paragraphs`` they were fitted with, and the
  reranker (and, when reading, the reader) they were fitted for; any other search
  keeps the reranker's own probability, and ``settings["calibration"]`` says why.
  Fitted by ``benchmarks/calibration_fit.py --write FILE`` from the tune answers
  collection; the shipped file (:data:`DEFAULT_FILE`) is fitted for the offline
  stand-ins (held-out ECE 0.006 on all shown hits, 0.032 on the first hit;
  docs/evaluation.md).
* **Reranker only** (a ranking-policy file, ``qa-search fit-policy --features
  rerank_logit``): ``sigmoid(a * logit(p) + b)`` of the reranker's probability.
  Kept for comparison: it calibrates all hits but not the first one (held-out
  first-hit ECE 0.30), because the blend puts a paragraph first on retrieval
  evidence the reranker's score does not see.

A fitted ranking policy (``policy``) is calibrated itself and is not recalibrated.

Example::

    >>> c = FinalCalibration(reranker="r", rerank_weight=0.5, read_weight=0.08,
    ...                      with_reading=Platt({"final": 3.0, "first": 3.0}, -6.0),
    ...                      without_reading=Platt({"final": 6.0, "first": 1.0}, -5.0))
    >>> [round(p, 3) for p in c.probabilities([1.2, 0.9, 0.3], read=True)]
    [0.646, 0.036, 0.006]
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.errors import ConfigError
from pipeline.files import write_json
from pipeline.rank.policy import Policy, features
from pipeline.rank.reading import reading_mismatch
from pipeline.rerank.blend import FORMULA as BLEND_FORMULA

logger = logging.getLogger(__name__)

#: What a reranker-only calibration (a policy file) may weigh: the reranker's own score, nothing from retrieval.
ALLOWED = frozenset({"rerank_logit", "rerank_probability"})
#: What a final-score calibration weighs: the final score, and whether the hit is first.
FINAL_FEATURES = ("final", "first")
KIND = "final-score"
FORMAT = 1
#: The shipped final-score calibration, fitted for the offline stand-in reranker and reader.
DEFAULT_FILE = Path(__file__).with_name("final_calibration.json")


@dataclass(frozen=True)
class Platt:
    """``sigmoid(intercept + sum(weights[f] * value[f]))`` over :data:`FINAL_FEATURES`."""

    weights: Mapping[str, float]
    intercept: float

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FINAL_FEATURES)
        if unknown:
            raise ValueError(f"unknown feature(s) {', '.join(sorted(unknown))}; valid values: {', '.join(FINAL_FEATURES)}")
        values = [*self.weights.values(), self.intercept]
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError("a weight is not a finite number")
        if any(float(w) < 0 for w in self.weights.values()):
            raise ValueError("a negative weight would give a hit a lower probability than one shown below it")

    def __call__(self, final: float, first: bool) -> float:
        z = self.intercept + self.weights.get("final", 0.0) * final + self.weights.get("first", 0.0) * float(first)
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "intercept": self.intercept}


@dataclass(frozen=True)
class FinalCalibration:
    """Platt scaling of the final score plus a first-place feature (see the module doc)."""

    reranker: str | None
    rerank_weight: float
    read_weight: float
    with_reading: Platt
    without_reading: Platt
    reader: str | None = None
    fitted: dict[str, Any] = field(default_factory=dict)
    blend: str = BLEND_FORMULA  # the blend formula whose final scores it was fitted on
    read_paragraphs: int | None = None  # how many first hits the reader read and moved (None: not recorded)
    similarity_weight: float = 0.0  # the blend's weight of the bi-encoder similarity it was fitted with

    def probabilities(self, finals: Sequence[float], *, read: bool) -> list[float]:
        """The calibrated probability of each hit, given the final scores in the order shown (best first)."""
        platt = self.with_reading if read else self.without_reading
        return [platt(float(f), place == 0) for place, f in enumerate(finals)]

    def matches(self, reranker: str) -> bool:
        return _same_model(self.reranker, reranker)

    def mismatch(self, *, rerank_weight: float, read_weight: float, reader: str | None,
                 read_paragraphs: int | None = None, similarity_weight: float = 0.0,
                 similarity: bool = True) -> str | None:
        """Why this calibration does not hold for a search with these settings, or ``None`` when it does.

        ``similarity``: the hits carry the bi-encoder similarity the blend adds (a BM25 search's do not).
        """
        if self.blend != BLEND_FORMULA:
            return f"fitted on another blend ({self.blend}; this version blends {BLEND_FORMULA}): refit it"
        if not math.isclose(rerank_weight, self.rerank_weight):
            return f"fitted for rerank_weight {self.rerank_weight}, this search uses {rerank_weight}"
        if not math.isclose(similarity_weight, self.similarity_weight):
            return f"fitted for similarity_weight {self.similarity_weight}, this search uses {similarity_weight}"
        if self.similarity_weight > 0 and not similarity:
            return "fitted with the bi-encoder's similarity in the blend, and this search has none (no dense scores)"
        if reader is not None and read_weight > 0:
            why = reading_mismatch(self.read_weight, self.read_paragraphs, read_weight, read_paragraphs)
            if why is not None:
                return why
            if not _same_model(self.reader, reader):
                return f"fitted with the reader {Path(self.reader or '').name}, this search reads with {Path(reader).name}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "format": FORMAT, "reranker": self.reranker, "reader": self.reader,
                "blend": self.blend, "rerank_weight": self.rerank_weight, "similarity_weight": self.similarity_weight,
                "read_weight": self.read_weight,
                "read_paragraphs": self.read_paragraphs,
                "with_reading": self.with_reading.to_dict(), "without_reading": self.without_reading.to_dict(),
                "fitted": self.fitted}

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON (a temporary file renamed into place)."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FinalCalibration":
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this version reads {FORMAT}")

        def platt(key: str) -> Platt:
            part = data[key]
            return Platt({str(k): float(v) for k, v in part["weights"].items()}, float(part["intercept"]))

        return cls(reranker=data.get("reranker"), reader=data.get("reader"),
                   rerank_weight=float(data["rerank_weight"]), read_weight=float(data["read_weight"]),
                   similarity_weight=float(data.get("similarity_weight", 0.0)),
                   with_reading=platt("with_reading"), without_reading=platt("without_reading"),
                   fitted=dict(data.get("fitted") or {}), blend=str(data.get("blend", "min-max over candidates")),
                   read_paragraphs=_count(data.get("read_paragraphs", (data.get("fitted") or {}).get("paragraphs_read"))))


Calibration = FinalCalibration | Policy


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _same_model(fitted: str | None, used: str | None) -> bool:
    if fitted is None:
        return True
    if used is None:
        return False
    return fitted == used or Path(fitted).name == Path(used.rstrip("/")).name


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file of either kind; a missing or malformed one is a :class:`ConfigError` naming it."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"No calibration file at {path}; fit one with: python benchmarks/calibration_fit.py "
                          f"--tune COLLECTION --write {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The calibration {path} is not JSON ({exc}).") from None
    if isinstance(data, dict) and data.get("kind") == KIND:
        try:
            return FinalCalibration.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"The calibration {path} is not a valid final-score calibration ({exc}).") from None
    policy = Policy.load(path)
    extra = sorted(set(policy.coef) - ALLOWED)
    if extra:
        raise ConfigError(f"The calibration {path} weighs {', '.join(extra)}; a calibration uses only "
                          f"{', '.join(sorted(ALLOWED))} (pass a file with retrieval features as --policy).")
    return policy


def find_calibration(spec: str | None, reranker: str) -> Calibration | None:
    """The calibration for ``reranker``: ``spec`` a file, ``"none"`` for none, ``None`` for the shipped default.

    The shipped default (:data:`DEFAULT_FILE`) applies only to the reranker it was
    fitted for (the offline stand-in); with any other the reranker's probability
    stays as it is. A file the user names that was fitted for another reranker is
    not used either, with a warning.
    """
    if spec == "none":
        return None
    if spec is None:
        if not DEFAULT_FILE.exists():
            return None
        calibration = load_calibration(DEFAULT_FILE)
        if not calibration.matches(reranker):
            logger.info("No calibration was fitted for the reranker %s: Hit.probability is its own probability "
                        "(fit one with benchmarks/calibration_fit.py --write FILE, then --calibration FILE).", reranker)
            return None
        return calibration
    path = Path(spec).expanduser()
    calibration = load_calibration(path)
    if not calibration.matches(reranker):
        logger.warning("The calibration %s was fitted for the reranker %s, not %s: using the reranker's own "
                       "probability.", path, calibration.reranker, reranker)
        return None
    return calibration


def calibrated(calibration: Policy | None, probability: float) -> float:
    """``probability`` (the reranker's) through a reranker-only ``calibration``; unchanged without one."""
    if calibration is None:
        return float(probability)
    return calibration.score(features(probability, {}, {}))


def describe(calibration: Calibration | None) -> str:
    """What turns the reranker's probability into ``Hit.probability``, as recorded in results."""
    if calibration is None:
        return "none (the reranker's probability)"
    name = Path(calibration.reranker or "any reranker").name
    if isinstance(calibration, FinalCalibration):
        return f"final score, Platt scaling fitted for {name}"
    return f"Platt scaling fitted for {name}"


__all__ = ["ALLOWED", "DEFAULT_FILE", "FinalCalibration", "Platt", "calibrated", "describe", "find_calibration",
           "load_calibration"]
