"""A :class:`~pipeline.qa.QAPipeline` whose stages run in Ray Serve deployments.

This is the seam between the HTTP app and the cluster. :func:`remote_pipeline`
returns an ordinary :class:`QAPipeline` (so ``search_many``, the blend, the
hits and the best answer are the single-process code), built from stand-ins:

* :class:`RemoteRetriever` replaces ``qa.retriever`` and :class:`RemoteIndex`
  ``qa.index``: retrieval runs in the retrieval deployment, which also sends
  the candidates' passages (kept in a bounded cache for the rest of the search),
  and :class:`RemoteTermStatistics` asks it for the BM25 document frequencies
  that the answer policy's lexical evidence reads (kept in a bounded cache too:
  questions share most of their terms);
* :class:`RemoteReranker` (``score_pairs``, ``name``, ``describe``,
  ``max_length``, ``tokenizer``) and :class:`RemoteReader` (``read_pairs``, ``spans``,
  ``name``, ``describe``) call the reranker and reader deployments.

:func:`pipeline.apps.server.create_app` takes this pipeline like a local one;
``/v1/rerank`` and ``/v1/score`` use its reranker. Every call waits at most
``timeout_s``; a call to a replica that dies is retried (``retries`` times,
Serve routes it to a live replica), then fails with
:class:`~pipeline.errors.ServiceUnavailableError`, which the app answers with 503.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np

from pipeline.config import PipelineConfig, SearchSettings
from pipeline.corpus import Passage
from pipeline.errors import ServiceUnavailableError
from pipeline.qa import QAPipeline
from pipeline.retrieve.retriever import Retrieval

logger = logging.getLogger(__name__)

#: Passages kept in the ingress between retrieval and the end of a search.
PASSAGE_CACHE_SIZE = 50_000
#: Terms whose document frequency the ingress keeps (a few MB).
TERM_CACHE_SIZE = 100_000


class Caller:
    """Calls one deployment's methods: bounded waits, retries on a dead replica, 503 when it cannot answer."""

    def __init__(self, handle, name: str, *, timeout_s: float = 60.0, retries: int = 3):
        self.handle = handle
        self.name = name
        self.timeout_s = timeout_s
        self.retries = retries

    def __call__(self, method: str, *args: Any) -> Any:
        from ray import exceptions as ray_errors
        from ray.serve import exceptions as serve_errors

        retryable = (ray_errors.RayActorError, serve_errors.RequestCancelledError, serve_errors.ReplicaUnavailableError,
                     serve_errors.DeploymentUnavailableError)
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(self.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                return getattr(self.handle, method).remote(*args).result(timeout_s=left)
            except serve_errors.BackPressureError as exc:
                raise ServiceUnavailableError(f"The {self.name} replicas are at capacity; retry shortly.") from exc
            except TimeoutError as exc:
                raise ServiceUnavailableError(
                    f"The {self.name} deployment did not answer within {self.timeout_s:g} s; retry shortly."
                ) from exc
            except retryable as exc:
                logger.warning("A %s replica failed (%s); attempt %d of %d", self.name, type(exc).__name__,
                               attempt + 1, self.retries + 1)
                time.sleep(min(0.5 * (attempt + 1), max(0.0, deadline - time.monotonic())))
        raise ServiceUnavailableError(f"The {self.name} deployment has no live replica right now; retry shortly.")


class PassageCache:
    """Passages by position, as the retrieval deployment sent them; a miss is fetched from it."""

    def __init__(self, call: Caller, size: int = PASSAGE_CACHE_SIZE):
        self._call = call
        self._size = size
        self._items: OrderedDict[int, Passage] = OrderedDict()
        self._lock = threading.Lock()

    def update(self, passages: dict[int, Passage]) -> None:
        with self._lock:
            for position, passage in passages.items():
                self._items[position] = passage
                self._items.move_to_end(position)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __getitem__(self, position: int) -> Passage:
        with self._lock:
            found = self._items.get(position)
        if found is None:
            fetched = self._call("passages", [position])
            self.update(fetched)
            found = fetched[position]
        return found


class RemoteTermStatistics:
    """The index's BM25 document frequencies, asked of the retrieval deployment (what the answer policy reads).

    The last ``size`` terms' frequencies are kept, so a search asks the deployment
    only for terms no recent search asked about. Like the passages,
    they hold for the index the deployment serves, which does not change under it.
    """

    def __init__(self, call: Caller, info: dict[str, Any], size: int = TERM_CACHE_SIZE):
        self._call = call
        self.stemmer = info["stemmer"]
        self._len = int(info["passages"])
        self._size = size
        self._known: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._len

    def document_frequencies(self, terms) -> dict[str, int]:
        wanted = sorted(set(terms))
        with self._lock:
            found = {t: self._known[t] for t in wanted if t in self._known}
            for term in found:
                self._known.move_to_end(term)
        missing = [t for t in wanted if t not in found]
        if missing:
            fetched = {t: int(df) for t, df in self._call("document_frequencies", missing).items()}
            found.update(fetched)
            with self._lock:
                self._known.update(fetched)
                while len(self._known) > self._size:
                    self._known.popitem(last=False)
        return {t: found[t] for t in wanted}


class RemoteIndex:
    """What the app and the pipeline read of the index: its path, size, passages and term statistics."""

    def __init__(self, info: dict[str, Any], passages: PassageCache, bm25: RemoteTermStatistics):
        self.path = Path(info["path"])
        self.passages = passages
        self.bm25 = bm25
        self._len = int(info["passages"])

    def __len__(self) -> int:
        return self._len


class RemoteRetriever:
    """``retrieve_many`` in the retrieval deployment; the candidates' passages go into the cache."""

    def __init__(self, call: Caller, passages: PassageCache):
        self._call = call
        self._passages = passages

    def retrieve_many(self, queries: Sequence[str], k: int, settings: SearchSettings | None = None,
                      *, list_depth: int = 0) -> list[Retrieval]:
        found, passages = self._call("retrieve", list(queries), k, settings or SearchSettings(), list_depth)
        self._passages.update(passages)
        return found

    def retrieve(self, query: str, k: int, settings: SearchSettings | None = None) -> Retrieval:
        return self.retrieve_many([query], k, settings)[0]


class RemoteReranker:
    """The reranker deployment, with the attributes the app and the pipeline read."""

    def __init__(self, call: Caller, info: dict[str, Any]):
        self._call = call
        self.name = info["name"]
        self.max_length = info["max_length"]
        self.tokenizer = info["tokenizer"]  # a local copy: usage tokens are counted here, as in one process
        self._describe = info["describe"]

    def describe(self) -> str:
        return self._describe

    def score_pairs(self, pairs: Sequence[tuple[str, str]], groups: Sequence[Hashable] | None = None) -> np.ndarray:
        """Like :meth:`Reranker.score_pairs`: ``groups`` keeps requests that share a call apart."""
        if not len(pairs):
            return np.zeros(0, dtype=np.float64)
        labels = None if groups is None else list(groups)
        return np.asarray(self._call("score", [tuple(p) for p in pairs], labels), dtype=np.float64)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, t) for t in texts])


class RemoteReader:
    """The reader deployment, with the attributes the pipeline reads."""

    def __init__(self, call: Caller, info: dict[str, Any]):
        self._call = call
        self.name = info["name"]
        self._describe = info["describe"]

    def describe(self) -> str:
        return self._describe

    def read_pairs(self, pairs: Sequence[tuple[str, str]]):
        return self._call("read_pairs", [tuple(p) for p in pairs])

    def spans(self, pairs: Sequence[tuple[str, str]], *, top: int = 20):
        """Like :meth:`Reader.spans`: each pair's best spans, scored to compare across texts."""
        return self._call("spans", [tuple(p) for p in pairs], top)


class EncoderName:
    """The bi-encoder as the pipeline's settings name it (the model itself lives in the retrieval deployment).

    ``similarities`` asks the retrieval deployment (what the answer policy's ``sentence_similarity`` reads).
    """

    def __init__(self, name: str | None, call: Caller | None = None):
        self.name = name
        self._call = call

    def similarities(self, query: str, texts: Sequence[str]) -> list[float]:
        if self._call is None or self.name is None:
            return [math.nan] * len(texts)
        return list(self._call("similarities", query, list(texts)))


def wait_for(call: Caller, wait_s: float) -> dict[str, Any]:
    """The deployment's ``info()``, waiting up to ``wait_s`` for a replica to come up."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return call("info")
        except ServiceUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def remote_pipeline(handles: dict[str, Any], config: PipelineConfig, *, timeout_s: float = 60.0, retries: int = 3,
                    wait_s: float = 600.0) -> QAPipeline:
    """A :class:`QAPipeline` over the deployments in ``handles`` (``retrieval``, and ``reranker``/``reader`` if served).

    Returns once every deployment answers (what ``/readyz`` waits for).
    """
    calls = {name: Caller(h, name, timeout_s=timeout_s, retries=retries) for name, h in handles.items() if h is not None}
    info = {name: wait_for(call, wait_s) for name, call in calls.items()}
    passages = PassageCache(calls["retrieval"])
    reranker = RemoteReranker(calls["reranker"], info["reranker"]) if "reranker" in calls else None
    reader = RemoteReader(calls["reader"], info["reader"]) if "reader" in calls else None
    statistics = RemoteTermStatistics(calls["retrieval"], info["retrieval"])
    qa = QAPipeline(RemoteIndex(info["retrieval"], passages, statistics),
                    encoder=EncoderName(info["retrieval"]["bi_encoder"], calls["retrieval"]),
                    reranker=reranker, reader=reader, config=config)
    qa.retriever = RemoteRetriever(calls["retrieval"], passages)
    return qa
