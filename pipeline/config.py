"""All settings of the pipeline in one place, in two records.

* :class:`LoadSettings`: what is fixed when a pipeline loads (models, backend,
  device, threads, caches).
* :class:`SearchSettings`: what a single search may change (mode, fusion,
  candidates, top_k, threshold, weights).

:class:`PipelineConfig` holds one of each. Defaults are the product's defaults;
:meth:`PipelineConfig.from_env` applies the ``QA_SEARCH_*`` environment
variables (through :func:`env_value`, the one parser of environment values),
and keyword settings win over both; each keyword goes to the record that owns it.

Example::

    >>> from pipeline.config import PipelineConfig
    >>> cfg = PipelineConfig.from_env({}, mode="bm25", top_k=5)
    >>> cfg.search.mode, cfg.search.top_k, cfg.load.rerank_backend.value
    (<RetrievalMode.BM25: 'bm25'>, 5, 'auto')
    >>> cfg.search_with(top_k=3).top_k
    3
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, TypeVar

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

#: Environment variables read by :meth:`PipelineConfig.from_env`, with the setting each one sets.
ENV_VARS: Mapping[str, str] = {
    "QA_SEARCH_BI_ENCODER": "bi_encoder",
    "QA_SEARCH_RERANKER": "reranker",
    "QA_SEARCH_READER": "reader",
    "QA_SEARCH_DEVICE": "device",
    "QA_SEARCH_THRESHOLD": "threshold",
    "QA_SEARCH_RERANK_BACKEND": "rerank_backend",
    "QA_SEARCH_READER_BACKEND": "reader_backend",
    "QA_SEARCH_THREADS": "threads",
    "QA_SEARCH_CASCADE_RERANKER": "cascade_reranker",
    "QA_SEARCH_ANSWER_POLICY": "answer_policy",
    "QA_SEARCH_ABSTAIN_BELOW": "abstain_below",
    "QA_SEARCH_POLICY": "policy",
    "QA_SEARCH_CALIBRATION": "calibration",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_value(var: str, raw: str, kind: type) -> Any:
    """``raw`` (the text of environment variable ``var``) as a ``kind`` (bool, int, float or str).

    The one parser of environment values: the pipeline's and the server's settings
    both read theirs through it. A bad value raises :class:`ConfigError` naming the variable.
    """
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        names = {bool: "true or false", int: "a whole number", float: "a number"}
        raise ConfigError(f"{var} must be {names[kind]}, got {raw!r}.") from None
    return raw


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
        raise ConfigError(f"{name} must be {what}, got {value!r}.")


def _check_unit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {value}.")


@dataclass(frozen=True)
class LoadSettings:
    """What is fixed when a pipeline loads: the models and how they run.

    Attributes:
        bi_encoder: sentence-transformers model for dense retrieval; ``None``
            means "the one recorded in the index manifest".
        reranker: cross-encoder name or path (any sentence-transformers
            cross-encoder).
        rerank: whether to load the cross-encoder at all.
        reader: extractive question-answering model name or path (any
            Hugging Face ``AutoModelForQuestionAnswering`` with a fast tokenizer).
        read: whether to load the reader at all.
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
        policy: a fitted ranking policy that turns the reranker's probability
            and the retrieval scores into one calibrated probability that orders
            and flags hits (:mod:`pipeline.rank.policy`): a JSON file, or
            ``"none"`` (the reranker's probability alone); ``None`` (default) = the blend of
            ``rerank_weight``, the order measured best on held-out questions.
        calibration: what turns the final score into ``Hit.probability``
            (and so ``answerable``) under the blend
            (:mod:`pipeline.rank.calibration`): ``None`` (default) = the
            shipped final-score calibration when the reranker is the one it
            was fitted for (the offline stand-in), else the reranker's own
            probability; a JSON file (``benchmarks/calibration_fit.py --write``,
            or a reranker-only Platt file from ``qa-search fit-policy
            --features rerank_logit``); ``"none"``: the reranker's probability.
        answer_policy: JSON file of the answer policy (paragraphs read, how
            span scores and paragraph probabilities combine, the fitted
            abstention model; see :mod:`pipeline.read.policy`); ``None`` =
            the one shipped with the package.
        reader_backend: what runs the reader, with the same values as
            ``rerank_backend``: ``auto`` (default: ONNX Runtime int8 on a CPU,
            PyTorch on a GPU), ``torch``, ``onnx`` or ``onnx-int8``; see
            :mod:`pipeline.read.engines`.
        int8_rescore: with ``onnx-int8`` (so with ``auto`` on a CPU), int8
            scores every candidate and the paragraphs in this many first places
            of a search's final order are scored again by the same model in ONNX
            Runtime fp32 (until those places hold only fp32 scores), so the
            first hits carry fp32's scores; the HTTP rerank endpoints re-score
            the best this many by int8 instead; 0 = int8 only.
    """

    bi_encoder: str | None = None
    reranker: str = DEFAULT_RERANKER
    rerank: bool = True
    reader: str = DEFAULT_READER
    read: bool = True
    batch_size: int = 32
    max_length: int | None = None
    device: str | None = None
    trust_remote_code: bool = False
    rerank_backend: RerankBackend = RerankBackend.AUTO
    reader_backend: RerankBackend = RerankBackend.AUTO
    threads: int | None = None
    score_cache_size: int = 10_000
    cascade_reranker: str | None = None
    cascade_keep: int = 10
    int8_rescore: int = 1
    policy: str | None = None
    calibration: str | None = None
    answer_policy: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rerank_backend", RerankBackend.parse(self.rerank_backend))
        object.__setattr__(self, "reader_backend", RerankBackend.parse(self.reader_backend))
        for name in ("batch_size", "cascade_keep"):
            _check_positive_int(name, getattr(self, name))
        if self.threads is not None:
            _check_positive_int("threads", self.threads)
        for name in ("score_cache_size", "int8_rescore"):
            _check_positive_int(name, getattr(self, name), minimum=0)
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {self.max_length}.")


@dataclass(frozen=True)
class SearchSettings:
    """What one search may change: retrieval, fusion, depths, the answerable threshold.

    Attributes:
        mode: ``bm25``, ``dense`` or ``hybrid``.
        fusion: ``weighted`` (default: min-max normalised scores,
            ``dense_weight`` for the dense side) or ``rrf`` (reciprocal rank
            fusion). Weighted fusion with dense weight 0.4 beat BM25 alone and
            RRF on the tune articles (MRR@10 85.82 vs 82.48 and 80.98; see
            docs/evaluation.md).
        rrf_k: the ``k`` constant of reciprocal rank fusion.
        dense_weight: weight of the dense scores in weighted fusion (0..1).
        candidates: how many fused candidates the reranker scores.
        agreed_candidates: early stop: when BM25 and the bi-encoder put the same
            paragraph first (hybrid only), the reranker scores only this many
            of the fused candidates (at least ``top_k``); 0 = always
            ``candidates`` (see :mod:`pipeline.rerank.depth`).
        rerank_weight: without a fitted ranking policy (``policy`` of
            :class:`LoadSettings`, the default), the reranked order is by
            ``rerank_weight * probability + (1 - rerank_weight) * fused score``
            (each fused score relative to the question's best, so that a
            paragraph's score does not depend on ``candidates``; see
            :func:`pipeline.rerank.blend.blended_scores`); 1.0 is the reranker
            alone. Chosen on tune articles (docs/ranking.md).
        similarity_weight: the blend also adds ``similarity_weight`` times
            the bi-encoder's similarity of question and paragraph (a reranked
            search gives every candidate of a dense or hybrid search its
            similarity; a BM25 search has none to add); 0 = the fused score
            alone carries the retrieval evidence. Chosen on tune articles
            (docs/ranking.md).
        read_weight: with the blend, the paragraphs the reader reads (the
            first ``read_paragraphs``) move by ``read_weight * best span
            score`` added to their blended score (see
            :mod:`pipeline.rank.reading`); 0 = the reader does not change the
            order. Chosen on tune articles (docs/ranking.md).
        read_paragraphs: how many of the first hits the reader reads (at least
            the answer policy's ``paragraphs``): their span scores move them
            (``read_weight``), and the answer is decided on the order after
            the move. Chosen with ``read_weight`` on tune articles
            (docs/ranking.md).
        top_k: how many hits a search returns.
        threshold: ``Hit.probability`` (the reranker's, or a fitted ranking
            policy's) at which a paragraph counts as answering the question.
        max_query_chars: longest question accepted, in characters.
        rerank: use the loaded cross-encoder (``False`` skips it for this search).
        read: use the loaded reader (``False`` skips it for this search).
        abstain: let the answer policy withhold the answer when no paragraph
            seems to answer (``False``: always give the best candidate).
        abstain_below: the answerability under which the search abstains
            (``None``: the answer policy's own threshold, where 85% of the
            answerable tune questions keep an answer). Lower keeps more answers
            and gives more false ones (docs/answers.md, "Choosing the threshold").
    """

    mode: RetrievalMode = RetrievalMode.HYBRID
    fusion: FusionMethod = FusionMethod.WEIGHTED
    rrf_k: int = 60
    dense_weight: float = 0.4
    candidates: int = 15
    agreed_candidates: int = 10
    rerank_weight: float = 0.5
    similarity_weight: float = 0.5
    read_weight: float = 0.06
    read_paragraphs: int = 4
    top_k: int = 10
    threshold: float = 0.5
    max_query_chars: int = 2000
    rerank: bool = True
    read: bool = True
    abstain: bool = True
    abstain_below: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", RetrievalMode.parse(self.mode))
        object.__setattr__(self, "fusion", FusionMethod.parse(self.fusion))
        for name in ("threshold", "dense_weight", "rerank_weight", "similarity_weight"):
            _check_unit(name, getattr(self, name))
        for name in ("candidates", "top_k", "rrf_k", "max_query_chars", "read_paragraphs"):
            _check_positive_int(name, getattr(self, name))
        _check_positive_int("agreed_candidates", self.agreed_candidates, minimum=0)
        if self.abstain_below is not None:
            _check_unit("abstain_below", self.abstain_below)
        weight = self.read_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 10.0:
            raise ConfigError(f"read_weight must be a number from 0 to 10, got {self.read_weight!r}.")

    def replace(self, **changes: Any) -> "SearchSettings":
        """A copy with some fields changed (validated again); a load-time setting is an error saying so."""
        return _replace(self, changes)


LOAD_FIELDS = frozenset(f.name for f in dataclasses.fields(LoadSettings))
SEARCH_FIELDS = frozenset(f.name for f in dataclasses.fields(SearchSettings))
#: Settings in both records: loading the model (LoadSettings) vs. using it in one search (SearchSettings).
SHARED_FIELDS = LOAD_FIELDS & SEARCH_FIELDS
_FIELD_TYPES = {f.name: f.type for cls in (LoadSettings, SearchSettings) for f in dataclasses.fields(cls)}

_S = TypeVar("_S", LoadSettings, SearchSettings)


def _replace(record: _S, changes: Mapping[str, Any]) -> _S:
    own = {f.name for f in dataclasses.fields(record)}
    misplaced = sorted(set(changes) - own)
    if misplaced:
        load_only = [n for n in misplaced if n in LOAD_FIELDS]
        if load_only and isinstance(record, SearchSettings):
            raise ConfigError(
                f"{', '.join(load_only)} {'is' if len(load_only) == 1 else 'are'} fixed when the pipeline loads and "
                "cannot change per search; load another pipeline: QAPipeline.load(index, "
                + ", ".join(f"{n}=..." for n in load_only) + ")."
            )
        raise ConfigError(f"Unknown setting(s): {', '.join(misplaced)}.")
    return dataclasses.replace(record, **changes)


def _env_kind(name: str) -> type:
    annotation = str(_FIELD_TYPES[name])
    for kind in (bool, int, float):
        if annotation.startswith(kind.__name__):
            return kind
    return str


@dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline: :attr:`load` (fixed at load time) and :attr:`search` (per-search defaults)."""

    load: LoadSettings = dataclasses.field(default_factory=LoadSettings)
    search: SearchSettings = dataclasses.field(default_factory=SearchSettings)

    @classmethod
    def of(cls, **settings: Any) -> "PipelineConfig":
        """The defaults with ``settings`` applied, each to the record that owns it (``None`` values are ignored)."""
        return cls().replace(**settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **settings: Any) -> "PipelineConfig":
        """Defaults, then ``QA_SEARCH_*`` variables, then ``settings`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            if env.get(var):
                values[name] = env_value(var, env[var], _env_kind(name))
        values.update({k: v for k, v in settings.items() if v is not None})
        return cls().replace(**values)

    def replace(self, **settings: Any) -> "PipelineConfig":
        """A copy with ``settings`` changed; ``rerank``/``read`` set both loading and use (``None`` ignored)."""
        settings = {k: v for k, v in settings.items() if v is not None}
        unknown = set(settings) - LOAD_FIELDS - SEARCH_FIELDS
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        load = {k: v for k, v in settings.items() if k in LOAD_FIELDS}
        search = {k: v for k, v in settings.items() if k in SEARCH_FIELDS}
        return PipelineConfig(_replace(self.load, load), _replace(self.search, search))

    def search_with(self, **overrides: Any) -> SearchSettings:
        """The search settings with per-search ``overrides`` (``None`` ignored); load-time names are an error."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return self.search.replace(**overrides) if overrides else self.search

    def to_dict(self) -> dict[str, Any]:
        """Every setting, flat, enums as their values (for JSON and reports)."""
        out: dict[str, Any] = {}
        for record in (self.load, self.search):
            for f in dataclasses.fields(record):
                value = getattr(record, f.name)
                out[f.name] = value.value if isinstance(value, Enum) else value
        out["rerank"] = self.load.rerank and self.search.rerank
        out["read"] = self.load.read and self.search.read
        return out
