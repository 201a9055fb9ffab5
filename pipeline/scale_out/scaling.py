"""How many replicas each Ray Serve deployment runs, and what each asks of the cluster.

Set by flags (``qa-search serve --ray --reranker-replicas 4 ...``) or by
``QA_SEARCH_RAY_<FIELD>`` variables (``QA_SEARCH_RAY_RERANKER_REPLICAS=4``).

Example::

    >>> from pipeline.scale_out.scaling import RayScaling
    >>> RayScaling.from_env({"QA_SEARCH_RAY_RERANKER_REPLICAS": "2"}).reranker_replicas
    2
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping

from pipeline.config import env_value
from pipeline.errors import ConfigError

ENV_PREFIX = "QA_SEARCH_RAY_"


@dataclass(frozen=True)
class RayScaling:
    """Replicas and resources of the deployments.

    Attributes:
        api_replicas: replicas of the HTTP app (FastAPI behind Ray Serve's proxy).
        retrieval_replicas: replicas holding the index and the bi-encoder.
        reranker_replicas: cross-encoder replicas (the costly stage).
        reader_replicas: extractive reader replicas.
        reranker_max_replicas: above ``reranker_replicas``, autoscale the reranker up to this many
            (``0``: a fixed count); likewise ``reader_max_replicas``.
        target_ongoing_requests: the autoscaler's target of requests in flight per replica.
        replica_cpus: CPUs each model replica reserves (fractions allowed, e.g. 0.5).
        gpus: GPUs per reranker and reader replica; ``-1`` (default): 1 where the cluster has GPUs, else 0.
        timeout_s: longest wait for one deployment call before the request gets 503.
        retries: calls retried on another replica when one dies mid-request.
    """

    api_replicas: int = 1
    retrieval_replicas: int = 1
    reranker_replicas: int = 1
    reader_replicas: int = 1
    reranker_max_replicas: int = 0
    reader_max_replicas: int = 0
    target_ongoing_requests: float = 2.0
    replica_cpus: float = 1.0
    gpus: float = -1.0
    timeout_s: float = 60.0
    retries: int = 3

    def __post_init__(self) -> None:
        for name in ("api_replicas", "retrieval_replicas", "reranker_replicas", "reader_replicas"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}.")
        for name, low in (("reranker_max_replicas", "reranker_replicas"), ("reader_max_replicas", "reader_replicas")):
            value = getattr(self, name)
            if value and value < getattr(self, low):
                raise ConfigError(f"{name} ({value}) must be 0 (no autoscaling) or at least {low} ({getattr(self, low)}).")
        if self.replica_cpus < 0 or self.target_ongoing_requests <= 0 or self.timeout_s <= 0 or self.retries < 0:
            raise ConfigError("replica_cpus and retries must be ≥ 0, target_ongoing_requests and timeout_s > 0.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "RayScaling":
        """Defaults, then ``QA_SEARCH_RAY_*``, then ``overrides`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = env_value(ENV_PREFIX + f.name.upper(), raw, type(f.default))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replicas(self, fixed: int, most: int) -> dict[str, Any]:
        """Deployment options: a fixed replica count, or an autoscaling range."""
        if most and most > fixed:
            return {"autoscaling_config": {"min_replicas": fixed, "initial_replicas": fixed, "max_replicas": most,
                                           "target_ongoing_requests": self.target_ongoing_requests}}
        return {"num_replicas": fixed}
