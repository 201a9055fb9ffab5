"""What the endpoints serve: the pipeline and the rerankers, loaded in the background, each behind a micro-batcher.

Inference never runs on the event loop: it goes through a
:class:`~pipeline.rerank.batching.MicroBatcher` per model, which also lets requests
that arrive together share one model call (``batching``; switch off to compare).

Under load (see :mod:`pipeline.apps.server.admission`): every request is admitted by its
weight in pairs or refused at once with 429/503 and ``Retry-After``; a rerank larger than
``batch_max_pairs`` is split into chunks that queue like any other client's items, so it
never holds the model while small requests wait; the batchers take turns at the model
(one :class:`~pipeline.rerank.batching.FairGate`), and clients share each queue by weight;
a request not done within ``request_timeout_s`` gets 503 and its waiting work is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import contextmanager
from typing import (
    Any,
    Awaitable,
    Callable,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
    Union,
)

import numpy as np
from fastapi import HTTPException

from pipeline.apps.server.admission import Admission, Overloaded, current_client
from pipeline.apps.server.settings import ServerSettings
from pipeline.errors import ConfigError, QASearchError
from pipeline.models.resolve import display_name, hide_paths
from pipeline.qa import QAPipeline
from pipeline.rerank.batching import FairGate, MicroBatcher
from pipeline.rerank.cascade import Cascade
from pipeline.rerank.chunking import DocumentChunks, chunk_document, max_pool
from pipeline.rerank.reranker import Reranker

logger = logging.getLogger(__name__)

PipelineSource = Union[QAPipeline, Callable[[], QAPipeline], None]
RerankerSource = Union[Mapping[str, Reranker], Callable[[], Mapping[str, Reranker]], None]


def public_name(name: str) -> str:
    """A model or index name safe to show clients: a local path (existing or not) becomes its last part."""
    return display_name(name)


def pair_tokens(reranker: Reranker, pairs: Sequence[tuple[str, str]]) -> list[int] | None:
    """Tokens the model reads for each pair (after truncation), or ``None`` when its tokenizer is not reachable."""
    tokenizer = getattr(reranker, "tokenizer", None) or getattr(getattr(reranker, "model", None), "tokenizer", None)
    if tokenizer is None or not pairs:
        return None if tokenizer is None else []
    try:
        encoded = tokenizer(
            [q for q, _ in pairs], [p for _, p in pairs], truncation=True, max_length=int(reranker.max_length)
        )
    except Exception:  # noqa: BLE001 - usage figures must never fail a request
        logger.debug("Token counting failed", exc_info=True)
        return None
    return [len(ids) for ids in encoded["input_ids"]]


def score_batch(reranker: Reranker, items: Sequence[Sequence[tuple[str, str]]]) -> list[tuple[np.ndarray, list[int] | None]]:
    """Scores several requests' pairs in one model call: ``(probabilities, tokens per pair)`` per request.

    Each request is its own group: its scores are the ones it would get alone (see ``Cascade.score_pairs``).
    """
    flat = [pair for item in items for pair in item]
    groups = [n for n, item in enumerate(items) for _ in item]
    scores = np.asarray(reranker.score_pairs(flat, groups), dtype=np.float64)
    tokens = pair_tokens(reranker, flat)
    out, offset = [], 0
    for item in items:
        end = offset + len(item)
        out.append((scores[offset:end], None if tokens is None else tokens[offset:end]))
        offset = end
    return out


#: Batcher keys: which part of a reranker a batched call runs (a cascade's two stages run as separate calls).
WHOLE, SCREEN, RESCORE = None, "screen", "rescore"


def stage_of(reranker: Reranker | Cascade, key: Hashable) -> Reranker | Cascade:
    if key == SCREEN:
        return reranker.first
    if key == RESCORE:
        return reranker.main
    return reranker


class Service:
    """What the endpoints serve: the pipeline, the rerankers and their batchers; loads in the background."""

    def __init__(self, pipeline: PipelineSource, rerankers: RerankerSource, settings: ServerSettings):
        self.settings = settings
        self._pipeline_source = pipeline
        self._reranker_source = rerankers
        self.pipeline: QAPipeline | None = None
        self.rerankers: dict[str, Reranker] = {}
        self.default_model: str | None = None
        self.error: str | None = None
        self.ready = False
        self.admission = Admission(settings.max_pending_pairs, settings.max_client_pairs)
        self.gate = FairGate(settings.compute_slots)
        self.search_batcher = MicroBatcher(
            self._search_batch, enabled=settings.batching,
            max_batch=settings.batch_max_queries, max_wait_ms=settings.batch_max_wait_ms,
            gate=self.gate, kind="search",
        )
        self.rerank_batchers: dict[str, MicroBatcher] = {}
        if not callable(pipeline) and not callable(rerankers):
            self._install(pipeline, rerankers)

    @property
    def needs_loading(self) -> bool:
        return not self.ready and self.error is None

    def load(self) -> None:
        """Run the loaders (in a worker thread); a failure is kept for /readyz and logged."""
        try:
            pipeline = self._pipeline_source() if callable(self._pipeline_source) else self._pipeline_source
            rerankers = self._reranker_source() if callable(self._reranker_source) else self._reranker_source
            self._install(pipeline, rerankers)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz, the server stays up
            logger.exception("Loading the models failed")
            # Clients see the reason without the server's paths (the log has them).
            self.error = hide_paths(str(exc) if isinstance(exc, QASearchError) else f"{type(exc).__name__}: {exc}")

    def _install(self, pipeline: QAPipeline | None, rerankers: Mapping[str, Reranker] | None) -> None:
        if rerankers is None:
            rerankers = {public_name(pipeline.reranker.name): pipeline.reranker} if pipeline and pipeline.reranker else {}
        if pipeline is None and not rerankers:
            raise ConfigError("The server needs an index or a reranker to serve.")
        default = self.settings.default_model or next(iter(rerankers), None)
        if default is not None and default not in rerankers:
            raise ConfigError(f"default_model {default!r} is not among the served models: {', '.join(rerankers)}.")
        self.pipeline, self.rerankers, self.default_model = pipeline, dict(rerankers), default
        for model_id, reranker in self.rerankers.items():
            self.rerank_batchers[model_id] = MicroBatcher(
                lambda key, items, r=reranker: score_batch(stage_of(r, key), items), enabled=self.settings.batching,
                max_batch=self.settings.batch_max_pairs, max_wait_ms=self.settings.batch_max_wait_ms,
                gate=self.gate, kind="rerank",
            )
        self.ready = True

    async def score_pairs(self, model_id: str, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, int | None]:
        """Admit ``pairs`` (weight: their number), score them in chunks of at most ``batch_max_pairs``.

        With a cascade (the int8 screen and fp32 re-scoring of the default CPU backend) a request that
        fits one chunk runs both stages in one call; a larger one has its chunks screened first, then its
        own best ``keep`` per question re-scored in one more call. Either way its scores are the ones it
        gets alone (not dependent on the chunking or on who shared its calls), and a large request costs
        one re-scoring, not one per chunk.
        """
        client = current_client.get()
        with self._admitted(client, len(pairs)):
            return await self._within_deadline(self._score(model_id, pairs, client))

    async def rerank_documents(
        self, model_id: str, query: str, documents: Sequence[str], *, max_chunks: int, max_tokens: int | None = None,
    ) -> tuple[np.ndarray, list[DocumentChunks | None], int | None]:
        """Each document's score, its best chunk's: long documents are read in chunks that fit the model.

        Returns ``(scores, how each document was read, tokens read)``; a reranker
        without a reachable tokenizer (a remote one) reads each document as one
        pair, truncated by the model, and its reading is ``None`` (unknown).
        """
        reranker = self.rerankers[model_id]
        tokenizer = getattr(reranker, "tokenizer", None)
        if tokenizer is None:
            scores, tokens = await self.score_pairs(model_id, [(query, d) for d in documents])
            return scores, [None] * len(documents), tokens
        length = int(reranker.max_length)
        chunks = await asyncio.to_thread(lambda: [
            chunk_document(tokenizer, query, d, max_length=length, max_chunks=max_chunks, max_tokens=max_tokens)
            for d in documents])
        pairs = [(query, text) for c in chunks for text in c.texts]
        if len(pairs) > self.settings.max_client_pairs:
            raise HTTPException(
                413, f"These documents make {len(pairs):,} (query, chunk) pairs for a model that reads {length} "
                f"tokens; the limit is {self.settings.max_client_pairs:,} (max_client_pairs). Send fewer or shorter "
                "documents, or lower max_chunks_per_doc / max_tokens_per_doc.",
            )
        scores, tokens = await self.score_pairs(model_id, pairs)
        best, _ = max_pool(scores, [len(c.texts) for c in chunks])
        return best, list(chunks), tokens

    async def _score(self, model_id: str, pairs: list[tuple[str, str]], client: Hashable) -> tuple[np.ndarray, int | None]:
        reranker = self.rerankers[model_id]
        if not isinstance(reranker, Cascade) or len(pairs) <= self.settings.batch_max_pairs:
            # One call, both cascade stages in it: a small request waits in the queue once, not twice.
            scores, tokens = await self._chunked(model_id, WHOLE, pairs, client)
            return scores, None if tokens is None else int(sum(tokens))
        distinct = list(dict.fromkeys(pairs))  # a document sent twice takes one place of the cascade's keep
        first, tokens = await self._chunked(model_id, SCREEN, distinct, client)
        keep = reranker.select(distinct, first)
        main, _ = await self._chunked(model_id, RESCORE, [distinct[i] for i in keep], client)
        scores = reranker.combine(distinct, first, keep, main).astype(np.float64)
        where = {pair: i for i, pair in enumerate(distinct)}
        at = [where[pair] for pair in pairs]
        return scores[at], None if tokens is None else int(sum(tokens[i] for i in at))

    async def _chunked(self, model_id: str, key: Hashable, pairs: list[tuple[str, str]],
                       client: Hashable) -> tuple[np.ndarray, list[int] | None]:
        batcher = self.rerank_batchers[model_id]
        size = self.settings.batch_max_pairs
        chunks = [pairs[i:i + size] for i in range(0, len(pairs), size)] or [[]]
        parts = await asyncio.gather(
            *(batcher.submit(chunk, key=key, weight=len(chunk), client=client) for chunk in chunks))
        scores = np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in parts]) if parts else np.zeros(0)
        tokens = None if any(t is None for _, t in parts) else [n for _, t in parts for n in t]
        return scores, tokens

    async def search(self, query: str, overrides: Mapping[str, Any]):
        """Admit a search (weight: the candidates it reranks), run it in a shared batch."""
        assert self.pipeline is not None
        client = current_client.get()
        cfg = self.pipeline.settings
        weight = max(int(overrides.get("candidates", cfg.candidates)), int(overrides.get("top_k", cfg.top_k)))
        with self._admitted(client, weight):
            return await self._within_deadline(
                self.search_batcher.submit(query, key=tuple(sorted(overrides.items())), weight=1, client=client))

    @contextmanager
    def _admitted(self, client: Hashable, weight: int) -> Iterator[None]:
        ticket = self.admission.admit(client, weight)
        try:
            ticket.__enter__()
        except Overloaded as exc:
            raise HTTPException(exc.status, exc.detail, headers={"Retry-After": str(exc.retry_after)}) from None
        with contextlib.ExitStack() as stack:
            stack.push(ticket)
            yield

    async def _within_deadline(self, work: Awaitable):
        try:
            return await asyncio.wait_for(work, self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(
                503, f"The request was not done within {self.settings.request_timeout_s:g} s (request_timeout_s); "
                "the server is busy. Retry later.", headers={"Retry-After": str(self.admission.retry_after())},
            ) from None

    def _search_batch(self, key: Hashable, questions: Sequence[str]):
        assert self.pipeline is not None
        return self.pipeline.search_many(list(questions), **dict(key))

    def check_ready(self) -> None:
        if not self.ready:
            detail = f"The models failed to load: {self.error}" if self.error else "The models are loading; retry shortly."
            raise HTTPException(503, detail, headers=None if self.error else {"Retry-After": "5"})

    def reranker(self, requested: str | None) -> tuple[str, Reranker]:
        self.check_ready()
        if not self.rerankers:
            raise HTTPException(404, "This server serves no reranker (it was started with --no-rerank).")
        if requested is None:
            return self.default_model, self.rerankers[self.default_model]
        for model_id, reranker in self.rerankers.items():
            if requested in (model_id, reranker.name):
                return model_id, reranker
        raise HTTPException(
            404, f"Unknown model {requested!r}; this server serves: {', '.join(self.rerankers)} (see GET /v1/models)."
        )

    async def aclose(self) -> None:
        for batcher in [self.search_batcher, *self.rerank_batchers.values()]:
            await batcher.aclose()
