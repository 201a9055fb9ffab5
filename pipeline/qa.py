"""``QAPipeline``: question in, answerable paragraphs out (retrieve → fuse → rerank).

Example::

    >>> from pipeline import QAPipeline
    >>> qa = QAPipeline.load("indexes/squad-dev", reranker="../shared/models/minilm-l6-qnli-squad-tune")  # doctest: +SKIP
    >>> result = qa.search("Which NFL team represented the AFC at Super Bowl 50?")                         # doctest: +SKIP
    >>> result.hits[0].title, result.hits[0].answerable                                                    # doctest: +SKIP
    ('Super_Bowl_50', True)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from .config import PipelineConfig, RetrievalMode
from .encoder import BiEncoder
from .errors import ConfigError, QueryError
from .index import SearchIndex
from .rerank import Reranker
from .results import Hit, SearchResult
from .retrieve import Candidate, Retriever

logger = logging.getLogger(__name__)


def check_question(question: Any, max_chars: int) -> str:
    """The question, trimmed; :class:`QueryError` if it is not text, empty or too long."""
    if not isinstance(question, str):
        raise QueryError(f"The question must be text, got {type(question).__name__}.")
    text = question.strip()
    if not text:
        raise QueryError("The question is empty: type a question.")
    if len(text) > max_chars:
        raise QueryError(f"The question is {len(text):,} characters long; the limit is {max_chars:,}.")
    return text


class QAPipeline:
    """Retrieve candidates (BM25, dense or hybrid), rerank them with a cross-encoder, flag answerable ones.

    Build with :meth:`load`; :meth:`search` answers one question,
    :meth:`search_many` several at once (dense encoding and reranking batched).
    """

    def __init__(
        self,
        index: SearchIndex,
        *,
        encoder: BiEncoder | None,
        reranker: Reranker | None,
        config: PipelineConfig | None = None,
    ):
        self.index = index
        self.encoder = encoder
        self.reranker = reranker
        self.config = config or PipelineConfig()
        self.retriever = Retriever(index, encoder)

    @classmethod
    def load(
        cls,
        index: str | Path,
        *,
        config: PipelineConfig | None = None,
        **settings: Any,
    ) -> "QAPipeline":
        """Open the index and load its models.

        ``settings`` are :class:`PipelineConfig` fields (``reranker=``,
        ``rerank=False``, ``mode=``, ...) applied over ``config`` or, without
        one, over the defaults and the ``QA_SEARCH_*`` environment variables.
        """
        if config is None:
            config = PipelineConfig.from_env(**settings)
        elif settings:
            config = config.replace(**{k: v for k, v in settings.items() if v is not None})
        search_index = SearchIndex.load(index)
        encoder = BiEncoder.load(
            config.bi_encoder or search_index.manifest.bi_encoder["name"],
            device=config.device,
            trust_remote_code=config.trust_remote_code,
        )
        search_index.check_encoder(encoder)
        reranker = None
        if config.rerank:
            reranker = Reranker.load(
                config.reranker,
                device=config.device,
                max_length=config.max_length,
                batch_size=config.batch_size,
                trust_remote_code=config.trust_remote_code,
            )
        return cls(search_index, encoder=encoder, reranker=reranker, config=config)

    def search(self, question: str, **overrides: Any) -> SearchResult:
        """Answer one question. ``overrides``: ``top_k``, ``candidates``, ``mode``, ``threshold``, ``rerank``, ..."""
        return self.search_many([question], **overrides)[0]

    def search_many(self, questions: Sequence[str], **overrides: Any) -> list[SearchResult]:
        """Answer several questions; same ``overrides`` as :meth:`search`."""
        started = time.perf_counter()
        cfg = self.config.replace(**{k: v for k, v in overrides.items() if v is not None}) if overrides else self.config
        if isinstance(questions, str):
            raise QueryError("search_many takes a list of questions; use search() for one.")
        texts = [check_question(q, cfg.max_query_chars) for q in questions]
        use_reranker = cfg.rerank and self.reranker is not None
        if cfg.rerank and self.reranker is None and "rerank" in overrides:
            raise ConfigError("Reranking was asked for, but this pipeline was loaded without a reranker.")
        depth = max(cfg.candidates, cfg.top_k) if use_reranker else cfg.top_k
        retrieved = self.retriever.retrieve_many(
            texts, mode=cfg.mode, k=depth, fusion=cfg.fusion, rrf_k=cfg.rrf_k, dense_weight=cfg.dense_weight
        )
        probabilities: list[list[float] | None] = [None] * len(texts)
        rerank_ms = 0.0
        if use_reranker:
            start = time.perf_counter()
            pairs = [(q, self.index.passages[c.position].text) for q, (cands, _) in zip(texts, retrieved) for c in cands]
            flat = self.reranker.score_pairs(pairs).tolist()
            rerank_ms = (time.perf_counter() - start) * 1000.0 / max(len(texts), 1)
            offset = 0
            for i, (cands, _) in enumerate(retrieved):
                probabilities[i] = flat[offset : offset + len(cands)]
                offset += len(cands)
        total_ms = (time.perf_counter() - started) * 1000.0 / max(len(texts), 1)
        results = []
        for text, (cands, timings), probs in zip(texts, retrieved, probabilities):
            if probs is not None:
                timings["rerank"] = rerank_ms
            timings["total"] = total_ms
            results.append(
                SearchResult(
                    query=text,
                    hits=self._hits(cands, probs, cfg),
                    timings={k: round(v, 3) for k, v in timings.items()},
                    settings=self._settings(cfg, probs is not None),
                )
            )
        return results

    def _hits(self, cands: list[Candidate], probs: list[float] | None, cfg: PipelineConfig) -> list[Hit]:
        order = list(range(len(cands)))
        if probs is not None:
            order.sort(key=lambda i: (-probs[i], cands[i].ranks["fused"]))
        hits = []
        for rank, i in enumerate(order[: cfg.top_k], start=1):
            cand, passage = cands[i], self.index.passages[cands[i].position]
            scores, ranks = dict(cand.scores), dict(cand.ranks)
            probability = None
            if probs is not None:
                probability = float(probs[i])
                scores["rerank"], ranks["rerank"] = probability, rank
            hits.append(
                Hit(
                    id=passage.id,
                    title=passage.title,
                    text=passage.text,
                    source_id=passage.source_id,
                    answerable=None if probability is None else probability >= cfg.threshold,
                    probability=probability,
                    scores=scores,
                    ranks=ranks,
                    metadata=dict(passage.metadata),
                )
            )
        return hits

    def _settings(self, cfg: PipelineConfig, reranked: bool) -> dict[str, Any]:
        return {
            "mode": cfg.mode.value,
            "fusion": cfg.fusion.value if cfg.mode is RetrievalMode.HYBRID else None,
            "candidates": cfg.candidates,
            "top_k": cfg.top_k,
            "threshold": cfg.threshold,
            "bi_encoder": self.encoder.name if self.encoder else None,
            "reranker": self.reranker.name if reranked and self.reranker else None,
            "index": str(self.index.path),
        }
