"""Reranked candidates → the final order: one calibrated probability per paragraph that orders and flags hits.

``policy`` (:class:`Policy`: a small logistic model over the reranker's logit and
depth-independent retrieval features, stored as JSON) and ``fit`` (fitting one on
tune questions: ``qa-search fit-policy``).
"""

from pipeline.rank.policy import FEATURES, Policy, features, find_policy

__all__ = ["FEATURES", "Policy", "features", "find_policy"]
