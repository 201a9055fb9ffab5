"""The Ray Serve deployments behind ``qa-search serve --ray``: retrieval, reranker, reader.

Each holds one part of :class:`~pipeline.qa.QAPipeline`, loaded by the same code
as a single-process server, and answers the calls of :mod:`pipeline.scale_out.remote`.

* :class:`RetrievalDeployment`: the index and the bi-encoder; BM25, dense or
  hybrid candidates, with the candidates' passages. The index is opened by
  :meth:`SearchIndex.load`, memory-mapped where the index format allows, so
  replicas on one node share its pages.
* :class:`RerankerDeployment`: the cross-encoder (or int8+fp32 cascade), with
  ``@serve.batch``: calls that arrive together share one model call.
* :class:`ReaderDeployment`: the extractive reader.

This module imports Ray; only the ``--ray`` paths import it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

import numpy as np
from ray import serve

from pipeline.config import PipelineConfig, SearchSettings
from pipeline.corpus import Passage
from pipeline.qa import QAPipeline, load_reader, load_reranker
from pipeline.read.reader import Reading
from pipeline.results import Answer
from pipeline.retrieve.retriever import Retrieval

logger = logging.getLogger(__name__)


class RetrievalDeployment:
    """First-stage retrieval over the index (no reranker, no reader here)."""

    def __init__(self, index: str, config: PipelineConfig):
        qa = QAPipeline.load(index, config=config, rerank=False, read=False)
        self.index = qa.index
        self.retriever = qa.retriever
        self.encoder = qa.encoder
        self.bi_encoder = qa.encoder.name if qa.encoder else None

    def info(self) -> dict[str, Any]:
        return {"path": str(self.index.path), "passages": len(self.index), "bi_encoder": self.bi_encoder,
                "stemmer": self.index.bm25.stemmer}

    def document_frequencies(self, terms: list[str]) -> dict[str, int]:
        """:meth:`BM25Index.document_frequencies`: what the answer policy's lexical evidence reads."""
        return self.index.bm25.document_frequencies(terms)

    def similarities(self, query: str, texts: list[str]) -> list[float]:
        """:meth:`BiEncoder.similarities`: what the answer policy's ``sentence_similarity`` reads."""
        return self.encoder.similarities(query, texts) if self.encoder is not None else [float("nan")] * len(texts)

    def retrieve(self, queries: list[str], k: int, settings: SearchSettings,
                 list_depth: int = 0) -> tuple[list[Retrieval], dict[int, Passage]]:
        """:meth:`Retriever.retrieve_many`, and the passages of every candidate (by position)."""
        found = self.retriever.retrieve_many(queries, k, settings, list_depth=list_depth)
        return found, self.passages([c.position for r in found for c in r.candidates])

    def passages(self, positions: Sequence[int]) -> dict[int, Passage]:
        return {int(p): self.index.passages[int(p)] for p in set(positions)}


class RerankerDeployment:
    """The cross-encoder; concurrent calls share model calls through ``@serve.batch``."""

    def __init__(self, config: PipelineConfig, max_batch_size: int = 16, batch_wait_s: float = 0.005):
        self.reranker = load_reranker(config.load)
        self.score_batch.set_max_batch_size(max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(batch_wait_s)

    def info(self) -> dict[str, Any]:
        """What the HTTP app shows and counts with: name, engine, token limit, and a copy of the tokenizer."""
        r = self.reranker
        tokenizer = getattr(r, "tokenizer", None) or getattr(getattr(r, "model", None), "tokenizer", None)
        return {"name": r.name, "describe": r.describe(), "max_length": getattr(r, "max_length", None), "tokenizer": tokenizer}

    async def score(self, pairs: list[tuple[str, str]], groups: list | None = None) -> np.ndarray:
        return await self.score_batch((pairs, groups))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def score_batch(self, requests: list[tuple[list[tuple[str, str]], list | None]]) -> list[np.ndarray]:
        # Each request's pairs keep their own groups (made unique per request), so requests that share this
        # batch never change each other's scores (the cascade picks its top per group).
        flat = [pair for pairs, _ in requests for pair in pairs]
        labels = [(r, None if groups is None else groups[i]) for r, (pairs, groups) in enumerate(requests)
                  for i in range(len(pairs))]
        if len(requests) == 1 and requests[0][1] is None:
            labels = None  # one ungrouped request: scored exactly as the single-process pipeline scores it
        scores = np.asarray(await asyncio.to_thread(self.reranker.score_pairs, flat, labels), dtype=np.float64)
        out, offset = [], 0
        for pairs, _ in requests:
            out.append(scores[offset : offset + len(pairs)])
            offset += len(pairs)
        return out


class ReaderDeployment:
    """The extractive reader."""

    def __init__(self, config: PipelineConfig):
        load = config.load
        self.reader = load_reader(load)

    def info(self) -> dict[str, Any]:
        return {"name": self.reader.name, "describe": self.reader.describe()}

    def read_pairs(self, pairs: list[tuple[str, str]]) -> list[Answer | None]:
        return self.reader.read_pairs(pairs)

    def spans(self, pairs: list[tuple[str, str]], top: int = 20) -> list[Reading]:
        return self.reader.spans(pairs, top=top)
