"""All settings of the pipeline in one place.

:class:`PipelineConfig` holds every knob of a search (models, retrieval mode,
fusion, candidate counts, threshold). Defaults are the product's defaults;
:meth:`PipelineConfig.from_env` applies the ``QA_SEARCH_*`` environment
variables, and keyword overrides win over both.

Example::

    >>> from pipeline.config import PipelineConfig
    >>> cfg = PipelineConfig(mode="bm25", top_k=5)
    >>> cfg.mode
    <RetrievalMode.BM25: 'bm25'>
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from pipeline.errors import ConfigError


class ChoiceEnum(str, Enum):
    """A string enum whose parse errors list the valid values."""

    @classmethod
    def parse(cls, value: "str | ChoiceEnum") -> "ChoiceEnum":
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if member.value == text:
                return member
        valid = ", ".join(m.value for m in cls)
        raise ConfigError(f"Unknown {cls.__doc__.split('.')[0].strip().lower()} {value!r}; valid values: {valid}.")

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


class RetrievalMode(ChoiceEnum):
    """Retrieval mode."""

    BM25 = "bm25"
    DENSE = "dense"
    HYBRID = "hybrid"


class FusionMethod(ChoiceEnum):
    """Fusion method."""

    RRF = "rrf"
    WEIGHTED = "weighted"


class FaissKind(ChoiceEnum):
    """FAISS index kind.

    ``auto`` picks by size: ``flat`` (exact) below 100,000 passages, else
    ``ivf-sq`` (8-bit scalar quantiser, exact re-scoring of the best
    candidates), following the FAISS guidelines.
    """

    AUTO = "auto"
    FLAT = "flat"
    HNSW = "hnsw"
    IVF_PQ = "ivf-pq"
    IVF_SQ = "ivf-sq"


class BM25Engine(ChoiceEnum):
    """Lexical engine: ``bm25s`` (sparse score matrix, memory-mapped; the default) or ``rank-bm25``
    (the reference: Python ``BM25Okapi`` rebuilt in memory at load, linear per query)."""

    BM25S = "bm25s"
    RANK_BM25 = "rank-bm25"


class EncoderBackend(ChoiceEnum):
    """Bi-encoder engine for builds: ``torch`` (fp32) or ONNX Runtime (``onnx`` fp32, ``onnx-int8``)."""

    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"


class RerankBackend(ChoiceEnum):
    """Rerank backend.

    ``auto`` picks ONNX Runtime with dynamic int8 quantisation on a CPU (when
    onnxruntime and onnx are installed, else PyTorch with a warning) and
    PyTorch on a GPU; ``torch`` is plain PyTorch fp32, ``onnx`` ONNX Runtime
    fp32, ``onnx-int8`` ONNX Runtime with int8 weights and activations.
    """

    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"


DEFAULT_BI_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_RERANKER = "cross-encoder/qnli-electra-base"
DEFAULT_READER = "mrm8488/electra-base-finetuned-squadv1"

#: Environment variables read by :meth:`PipelineConfig.from_env`.
ENV_VARS: Mapping[str, str] = {
    "QA_SEARCH_BI_ENCODER": "bi_encoder",
    "QA_SEARCH_RERANKER": "reranker",
    "QA_SEARCH_READER": "reader",
    "QA_SEARCH_DEVICE": "device",
    "QA_SEARCH_THRESHOLD": "threshold",
    "QA_SEARCH_RERANK_BACKEND": "rerank_backend",
    "QA_SEARCH_THREADS": "threads",
    "QA_SEARCH_CASCADE_RERANKER": "cascade_reranker",
}

#: Settings read from the environment as whole numbers / decimals (the rest are text).
_INT_VARS = ("threads",)
_FLOAT_VARS = ("threshold",)


@dataclass
class PipelineConfig:
    """Every setting of a search, with the product's defaults.

    Attributes:
        bi_encoder: sentence-transformers model for dense retrieval; ``None``
            means "the one recorded in the index manifest".
        reranker: cross-encoder name or path (any sentence-transformers
            cross-encoder).
        rerank: whether the cross-encoder reranks the candidates.
        reader: extractive question-answering model name or path (any
            Hugging Face ``AutoModelForQuestionAnswering`` with a fast tokenizer).
        read: whether the reader marks the answer in the hits shown (the
            answerable ones; the top 3 when there is no reranker).
        mode: ``bm25``, ``dense`` or ``hybrid``.
        fusion: ``weighted`` (default: min-max normalised scores,
            ``dense_weight`` for the dense side) or ``rrf`` (reciprocal rank
            fusion). Weighted fusion with dense weight 0.4 beat BM25 alone and
            RRF on the tune articles (MRR@10 85.82 vs 82.48 and 80.98; see
            docs/evaluation.md).
        rrf_k: the ``k`` constant of reciprocal rank fusion.
        dense_weight: weight of the dense scores in weighted fusion (0..1).
        candidates: how many fused candidates the reranker scores.
        rerank_weight: the reranked order is by ``rerank_weight * probability
            + (1 - rerank_weight) * fused score`` (fused scores min-max
            normalised over the question's candidates); 1.0 is the reranker
            alone. 0.5 is best on the tune articles and beats both the reranker
            alone and the hybrid order on held-out articles with the stand-in
            reranker (docs/evaluation.md). ``answerable`` still comes from the
            probability alone.
        top_k: how many hits a search returns.
        threshold: reranker probability at which a paragraph counts as
            answering the question.
        max_query_chars: longest question accepted, in characters.
        batch_size: batch size of the cross-encoder.
        max_length: token limit of (question, paragraph) pairs; ``None`` uses
            the model's own limit.
        device: ``cpu``, ``cuda``, ``cuda:1``, ... or ``None`` for automatic.
        trust_remote_code: allow models that ship their own code (jina).
        rerank_backend: ``auto`` (default: ONNX Runtime int8 on a CPU, PyTorch
            on a GPU), ``torch`` (plain PyTorch fp32), ``onnx`` or
            ``onnx-int8``; see docs/fast-rerank.md.
        threads: CPU threads of the reranker (PyTorch intra-op threads / ONNX
            Runtime ``intra_op_num_threads``); ``None`` = the physical cores
            this process may use.
        score_cache_size: how many (question, passage) reranker scores are
            kept in memory so a repeated or refined search does not recompute
            them; 0 switches the cache off.
        cascade_reranker: a small, fast cross-encoder that scores every
            candidate first so that the main reranker scores only the best
            ``cascade_keep``; ``None`` (default) switches the cascade off.
        cascade_keep: candidates per question the cascade passes on.
        int8_rescore: with ``onnx-int8`` (so with ``auto`` on a CPU), the best
            this many int8 scores of each question are scored again by the same
            model in ONNX Runtime fp32, which keeps the top of the ranking as
            fp32 has it; 0 = int8 only.
    """

    bi_encoder: str | None = None
    reranker: str = DEFAULT_RERANKER
    rerank: bool = True
    reader: str = DEFAULT_READER
    read: bool = True
    mode: RetrievalMode = RetrievalMode.HYBRID
    fusion: FusionMethod = FusionMethod.WEIGHTED
    rrf_k: int = 60
    dense_weight: float = 0.4
    candidates: int = 50
    rerank_weight: float = 0.5
    top_k: int = 10
    threshold: float = 0.5
    max_query_chars: int = 2000
    batch_size: int = 32
    max_length: int | None = None
    device: str | None = None
    trust_remote_code: bool = False
    rerank_backend: RerankBackend = RerankBackend.AUTO
    threads: int | None = None
    score_cache_size: int = 10_000
    cascade_reranker: str | None = None
    cascade_keep: int = 10
    int8_rescore: int = 3

    def __post_init__(self) -> None:
        self.mode = RetrievalMode.parse(self.mode)
        self.fusion = FusionMethod.parse(self.fusion)
        self.rerank_backend = RerankBackend.parse(self.rerank_backend)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values no search can use."""
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ConfigError(f"threshold must be between 0 and 1, got {self.threshold}.")
        for name in ("dense_weight", "rerank_weight"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}.")
        for name in ("candidates", "top_k", "rrf_k", "batch_size", "max_query_chars", "cascade_keep"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}.")
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1):
            raise ConfigError(f"threads must be a positive whole number, got {self.threads!r}.")
        for name in ("score_cache_size", "int8_rescore"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}.")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {self.max_length}.")

    def replace(self, **changes: Any) -> "PipelineConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "PipelineConfig":
        """Defaults, then ``QA_SEARCH_*`` variables, then ``overrides`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            if env.get(var):
                values[name] = _env_value(var, name, env[var])
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["mode"] = self.mode.value
        out["fusion"] = self.fusion.value
        out["rerank_backend"] = self.rerank_backend.value
        return out


def _env_value(var: str, name: str, text: str) -> Any:
    try:
        if name in _INT_VARS:
            return int(text)
        if name in _FLOAT_VARS:
            return float(text)
    except ValueError:
        kind = "a whole number" if name in _INT_VARS else "a number"
        raise ConfigError(f"{var} must be {kind}, got {text!r}.") from None
    return text
