"""What the operator of the web page decides, and visitors cannot: which models, how much work, how many at once.

Read from ``QA_SEARCH_UI_*`` variables (``QA_SEARCH_UI_RERANKERS``, ``QA_SEARCH_UI_MAX_CANDIDATES``, ...,
one per field, upper-cased); the defaults are safe for a page open to strangers (docs/security.md):

* ``rerankers`` / ``readers``: the models a visitor may pick, comma-separated names or paths
  (default: only the configured ``QA_SEARCH_RERANKER`` / ``QA_SEARCH_READER``); shown by their
  last path part, never the server's paths;
* ``free_text``: also let visitors type a Hugging Face model id (off: typing a name makes the
  server download and load it); local paths are never accepted from a visitor;
* ``max_candidates`` / ``max_top_k``: the most paragraphs one search may rerank / show;
* ``max_question_chars``: the longest question;
* ``max_searches`` and ``busy_wait_s``: searches run at once in the process, and how long a
  visitor waits for a turn before being asked to retry;
* ``max_indexes`` / ``max_models``: indexes, and models of each kind (reranker, reader), held in memory.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping

from pipeline.config import PipelineConfig, env_value
from pipeline.errors import ConfigError

ENV_PREFIX = "QA_SEARCH_UI_"
#: Longest model id typed by a visitor (Hub ids are at most 96 characters).
MAX_MODEL_NAME_CHARS = 96


@dataclass(frozen=True)
class UISettings:
    rerankers: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    free_text: bool = False
    max_candidates: int = 100
    max_top_k: int = 20
    max_question_chars: int = 500
    max_searches: int = 2
    busy_wait_s: float = 10.0
    max_indexes: int = 2
    max_models: int = 2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < (0 if f.name == "busy_wait_s" else 1):
                raise ConfigError(f"{ENV_PREFIX}{f.name.upper()} must be at least 1, got {value!r}.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, defaults: PipelineConfig | None = None) -> "UISettings":
        """Defaults, then ``QA_SEARCH_UI_*``; the model lists default to the pipeline's configured models."""
        env = os.environ if env is None else env
        defaults = defaults or PipelineConfig.from_env(env)
        values: dict = {"rerankers": (defaults.load.reranker,), "readers": (defaults.load.reader,)}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or not raw.strip():
                continue
            if f.name in ("rerankers", "readers"):
                values[f.name] = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
            else:
                values[f.name] = env_value(ENV_PREFIX + f.name.upper(), raw, type(f.default))
        return cls(**values)
