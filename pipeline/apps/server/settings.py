"""Every setting of the HTTP server, from flags and ``QA_SEARCH_SERVER_*`` variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from pipeline.apps.server.limits import Limits
from pipeline.config import env_value
from pipeline.errors import ConfigError

API_KEY_ENV = "QA_SEARCH_API_KEY"
CORS_ENV = "QA_SEARCH_CORS_ORIGINS"
SETTINGS_ENV_PREFIX = "QA_SEARCH_SERVER_"


@dataclass(frozen=True)
class ServerSettings:
    """Every setting of the HTTP server.

    :meth:`from_env` reads ``QA_SEARCH_API_KEY``, ``QA_SEARCH_CORS_ORIGINS``
    (comma-separated) and ``QA_SEARCH_SERVER_<FIELD>`` (e.g.
    ``QA_SEARCH_SERVER_MAX_DOCUMENTS=500``, ``QA_SEARCH_SERVER_BATCHING=0``).

    Attributes:
        host, port: where to listen; loopback unless told otherwise.
        api_key: when set, ``/v1/*`` needs ``Authorization: Bearer <key>``.
        cors_origins: origins allowed to call from a browser; empty: no CORS.
        max_query_chars: longest query / ``text_1``, in characters.
        max_documents: most documents per rerank call (and pairs per score call).
        max_document_chars: longest document / ``text_2``, in characters.
        max_top_k, max_candidates: largest ``top_k`` / ``candidates`` a search may ask for.
        max_body_bytes: largest request body.
        max_concurrency: connections served at once; more get 503 (Uvicorn's limit).
        batching: share model calls between requests that arrive together.
        batch_max_wait_ms: how long the first request of a batch waits for company.
        batch_max_pairs: most (query, document) pairs in one shared rerank call.
        batch_max_queries: most questions in one shared search call.
        default_model: reranker used when a request names none (default: the first).
        max_pending_pairs: most work admitted at once, in (query, document) pairs (a search
            weighs its candidates); more gets 503 with Retry-After.
        max_client_pairs: most work one client (API key, else address) may have admitted; more gets 429.
        request_timeout_s: an admitted request not answered within this gets 503 with Retry-After.
        body_timeout_s: a request body not received within this gets 408 (a slow-sending client).
        compute_slots: model calls at once (taken in turns by searches and reranks).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    max_query_chars: int = 2000
    max_documents: int = 1000
    max_document_chars: int = 20_000
    max_top_k: int = 100
    max_candidates: int = 500
    max_body_bytes: int = 8 * 1024 * 1024
    max_concurrency: int = 256
    batching: bool = True
    batch_max_wait_ms: float = 5.0
    batch_max_pairs: int = 128
    batch_max_queries: int = 16
    default_model: str | None = None
    max_pending_pairs: int = 8192
    max_client_pairs: int = 2048
    request_timeout_s: float = 30.0
    body_timeout_s: float = 10.0
    compute_slots: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, int) and not isinstance(f.default, bool):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError(f"{f.name} must be a positive whole number, got {value!r}.")
        if not 0 <= self.batch_max_wait_ms <= 1000:
            raise ConfigError(f"batch_max_wait_ms must be between 0 and 1000, got {self.batch_max_wait_ms}.")
        for name in ("request_timeout_s", "body_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError(f"{name} must be more than 0 and at most 3600 seconds, got {getattr(self, name)}.")
        biggest = max(self.max_documents, self.max_candidates)
        if self.max_client_pairs < biggest or self.max_pending_pairs < self.max_client_pairs:
            raise ConfigError(
                f"max_pending_pairs ({self.max_pending_pairs}) >= max_client_pairs ({self.max_client_pairs}) >= "
                f"the largest request (max_documents / max_candidates, {biggest}) must hold."
            )
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError(f"{API_KEY_ENV} is set but empty; unset it or give a key.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "ServerSettings":
        """Defaults, then the environment, then ``overrides`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get(API_KEY_ENV):
            values["api_key"] = env[API_KEY_ENV]
        if env.get(CORS_ENV):
            values["cors_origins"] = tuple(o.strip() for o in env[CORS_ENV].split(",") if o.strip())
        for f in dataclasses.fields(cls):
            raw = env.get(SETTINGS_ENV_PREFIX + f.name.upper())
            if raw is None or f.name in ("api_key", "cors_origins"):
                continue
            values[f.name] = env_value(SETTINGS_ENV_PREFIX + f.name.upper(), raw, type(f.default))
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "cors_origins" in values:
            values["cors_origins"] = tuple(values["cors_origins"])
        return cls(**values)

    @property
    def limits(self) -> Limits:
        """The request limits, as the schemas take them."""
        return Limits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Limits)})

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
