"""An optional calibrated ``Hit.probability`` under the blend: the reranker's probability through a fitted sigmoid.

A cross-encoder's sigmoid is not a probability of anything measured: the offline
stand-in shows 0.5-0.9 on paragraphs that are the gold one far less often than
that (docs/evaluation.md, "Reliability"). A calibration is Platt scaling,
``P = sigmoid(a * logit(p) + b)``, fitted on tune questions for one reranker by
the ranking policy's own command restricted to the reranker's score::

    qa-search fit-policy --index indexes/squad-dev --questions data/dev-v1.1.json --articles 0-23 \\
        --sample 1000 --seed 0 --reranker ../shared/models/minilm-l6-qnli-squad-tune --features rerank_logit \\
        --out benchmarks/policies/minilm-l6-qnli-squad-tune-platt.json

It is the same JSON file as a ranking policy (:class:`~pipeline.rank.policy.Policy`,
no code), with weights on ``rerank_logit`` / ``rerank_probability`` only: a
monotone map of one paragraph's reranker score, so it changes neither the order
(the blend and the reader's move still use the reranker's own probability,
``scores["rerank"]``) nor depends on how many candidates were fetched. It sets
``Hit.probability`` and so ``answerable`` (probability >= threshold).

It is off by default (``calibration`` names a file to use one): fitted over all
candidates, it calibrates the shown hits as a whole (held-out ECE 0.122 -> 0.015
with the stand-in) but not the first hit, which the blend puts first on
retrieval evidence the reranker's score alone does not see (top-hit ECE 0.118 ->
0.30; docs/evaluation.md). A fitted ranking policy is calibrated itself and is
not recalibrated.

Example::

    >>> from pipeline.rank.policy import Policy
    >>> platt = Policy(reranker="r", coef={"rerank_logit": 1.5}, intercept=-1.7)
    >>> round(calibrated(platt, 0.5), 3), round(calibrated(platt, 0.9), 3)
    (0.154, 0.831)
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.rank.policy import Policy, features

logger = logging.getLogger(__name__)

#: What a calibration may weigh: the reranker's own score, nothing from retrieval.
ALLOWED = frozenset({"rerank_logit", "rerank_probability"})


def find_calibration(spec: str | None, reranker: str) -> Policy | None:
    """The calibration in the JSON file ``spec`` names for ``reranker``; ``None`` or ``"none"``: no calibration."""
    if spec is None or spec == "none":
        return None
    path = Path(spec).expanduser()
    calibration = Policy.load(path)
    extra = sorted(set(calibration.coef) - ALLOWED)
    if extra:
        raise ConfigError(f"The calibration {path} weighs {', '.join(extra)}; a calibration uses only "
                          f"{', '.join(sorted(ALLOWED))} (pass a file with retrieval features as --policy).")
    if not calibration.matches(reranker):
        logger.warning("The calibration %s was fitted for the reranker %s, not %s: using the reranker's own "
                       "probability.", path, calibration.reranker, reranker)
        return None
    return calibration


def calibrated(calibration: Policy | None, probability: float) -> float:
    """``probability`` (the reranker's) through ``calibration``; unchanged without one."""
    if calibration is None:
        return float(probability)
    return calibration.score(features(probability, {}, {}))
