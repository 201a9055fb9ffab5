"""The HTTP API: search, Cohere/Jina-style rerank (v1 and Cohere v2) and vLLM-style score over FastAPI.

A thin shell over the public pipeline API (:class:`~pipeline.qa.QAPipeline`,
:class:`~pipeline.rerank.reranker.Reranker`). :func:`create_app` takes the pipeline and
rerankers as arguments (objects, or callables that load them in the
background), so there is no global state and tests serve tiny models.

* Every limit lives in :class:`~pipeline.apps.server.settings.ServerSettings` (flags,
  ``QA_SEARCH_SERVER_*`` variables) and in the OpenAPI schema; too-large input gets
  413, other bad input 422, with a message naming the limit and what was sent.
* ``/v1/rerank`` and ``/v2/rerank`` read a document longer than the model's limit in
  chunks and score it by its best chunk; each result says how it was read
  (``chunks``, ``document_tokens``, ``truncated``).
* Binds 127.0.0.1 by default; ``QA_SEARCH_API_KEY`` makes a bearer token
  mandatory on ``/v1/*`` and ``/v2/*``; CORS is off unless origins are configured.

Example::

    >>> from pipeline.apps.server import ServerSettings, create_app
    >>> app = create_app(None, rerankers={"tiny": reranker}, settings=ServerSettings())  # doctest: +SKIP
"""

# No "from __future__ import annotations": FastAPI reads the route annotations, which name local schema classes.
import asyncio
import logging
import math
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from pipeline.apps.server.auth import api_key_check
from pipeline.apps.server.errors import run_inference, validation_error
from pipeline.apps.server.limits import DOCUMENTS_PER_SEARCH_UNIT
from pipeline.apps.server.middleware import BodyLimit, ClientWatch
from pipeline.apps.server.schemas import MAX_CHUNKS_PER_DOC, build_schemas
from pipeline.apps.server.service import (
    PipelineSource,
    RerankerSource,
    Service,
    public_name,
)
from pipeline.apps.server.settings import ServerSettings

logger = logging.getLogger(__name__)


def create_app(
    pipeline: PipelineSource,
    *,
    rerankers: RerankerSource = None,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """The FastAPI app serving ``pipeline`` (``/v1/search``) and ``rerankers`` (``/v1/rerank``, ``/v1/score``).

    Args:
        pipeline: a loaded :class:`QAPipeline`, a callable that loads one
            (run in the background at startup; ``/readyz`` says when it is done),
            or ``None`` for a rerank-only server.
        rerankers: ``{model id: Reranker}``, a callable returning that, or
            ``None`` to serve the pipeline's own reranker.
        settings: limits, access and batching (default :meth:`ServerSettings.from_env`).
    """
    settings = settings or ServerSettings.from_env()
    service = Service(pipeline, rerankers, settings)
    schemas = build_schemas(settings.limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(to_thread.run_sync(service.load)) if service.needs_loading else None
        try:
            yield
        finally:
            if loading is not None and not loading.done():
                logger.info("Shutting down while the models are still loading")
            await service.aclose()

    app = FastAPI(
        title="qa-search",
        version="1",
        summary="Retrieve-and-rerank question answering: search an index, rerank or score text pairs.",
        lifespan=lifespan,
        responses={
            401: {"description": "missing or wrong API key (only when QA_SEARCH_API_KEY is set)"},
            408: {"description": "the request body did not arrive within body_timeout_s"},
            413: {"description": "a size limit was exceeded: the message names it and what was sent"},
            422: {"description": "invalid input: the message says which field and why"},
            429: {"description": "this client has too much work admitted (max_client_pairs); see Retry-After"},
            503: {"description": "the models are loading or failed (see /readyz), the server is at capacity, "
                                 "or the request passed request_timeout_s; see Retry-After"},
        },
    )
    app.state.service = service
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    # outermost: names the client, refuses one at its limit before reading its body, cancels the work of one that left
    app.add_middleware(ClientWatch, admission=service.admission)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    require_key = api_key_check(settings.api_key)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the index and models are loaded",
             responses={503: {"description": "still loading, or loading failed"}})
    async def readyz() -> JSONResponse:
        if not service.ready:
            status = "failed" if service.error else "loading"
            return JSONResponse({"status": status, "detail": service.error}, status_code=503)
        index = service.pipeline.index if service.pipeline else None
        return JSONResponse({
            "status": "ready",
            "index": {"name": public_name(str(index.path)), "passages": len(index)} if index else None,
            "models": list(service.rerankers),
        })

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
    v2 = APIRouter(prefix="/v2", dependencies=[Depends(require_key)])

    @v1.get("/models", tags=["models"], summary="The rerankers this server serves")
    async def models() -> dict[str, Any]:
        service.check_ready()
        return {
            "object": "list",
            "data": [
                {"id": model_id, "object": "model", "owned_by": "qa-search", "task": "rerank",
                 "max_length": getattr(r, "max_length", None), "default": model_id == service.default_model}
                for model_id, r in service.rerankers.items()
            ],
        }

    async def score_pairs(model_id: str, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, int | None]:
        return await run_inference(service.score_pairs(model_id, pairs))

    async def rerank_documents(body, *, max_chunks: int, max_tokens: int | None, api_version: str,
                               return_documents: bool = False) -> dict[str, Any]:
        model_id, _ = service.reranker(body.model)
        documents = body.documents
        scores, readings, tokens = await run_inference(service.rerank_documents(
            model_id, body.query, documents, max_chunks=max_chunks, max_tokens=max_tokens))
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[: body.top_n or len(documents)]
        results = []
        for i in order:
            result: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if return_documents:
                result["document"] = {"text": documents[i]}
            if readings[i] is not None:
                result.update(readings[i].describe())
            results.append(result)
        return {
            "id": str(uuid.uuid4()),
            "model": model_id,
            "results": results,
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "meta": {"api_version": {"version": api_version},
                     "billed_units": {"search_units": math.ceil(len(documents) / DOCUMENTS_PER_SEARCH_UNIT)}},
        }

    async def rerank(body: schemas.RerankRequest) -> dict[str, Any]:
        return await rerank_documents(body, max_chunks=body.max_chunks_per_doc, max_tokens=None, api_version="1",
                                      return_documents=body.return_documents)

    v1.add_api_route(
        "/rerank", rerank, methods=["POST"], response_model=schemas.RerankResponse, response_model_exclude_none=True,
        tags=["rerank"], summary="Rerank documents for a query (Cohere v1 / Jina compatible)",
    )

    async def rerank_v2(body: schemas.V2RerankRequest) -> dict[str, Any]:
        return await rerank_documents(body, max_chunks=MAX_CHUNKS_PER_DOC, max_tokens=body.max_tokens_per_doc,
                                      api_version="2")

    v2.add_api_route(
        "/rerank", rerank_v2, methods=["POST"], response_model=schemas.V2RerankResponse,
        response_model_exclude_none=True, tags=["rerank"],
        summary="Rerank documents for a query (Cohere v2 compatible: ClientV2.rerank)",
    )

    async def score(body: schemas.ScoreRequest) -> dict[str, Any]:
        model_id, _ = service.reranker(body.model)
        text_1 = body.text_1 * len(body.text_2) if len(body.text_1) == 1 else body.text_1
        scores, tokens = await score_pairs(model_id, list(zip(text_1, body.text_2)))
        return {
            "id": f"score-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": model_id,
            "data": [{"index": i, "object": "score", "score": float(s)} for i, s in enumerate(scores)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }

    v1.add_api_route(
        "/score", score, methods=["POST"], response_model=schemas.ScoreResponse,
        tags=["rerank"], summary="Score text pairs (vLLM /score compatible)",
    )

    async def search(body: schemas.SearchRequest) -> dict[str, Any]:
        service.check_ready()
        if service.pipeline is None:
            raise HTTPException(404, "This server was started without an index; only /v1/rerank and /v1/score work.")
        overrides = {k: v for k, v in body.model_dump().items() if k != "query" and v is not None}
        result = await run_inference(service.search(body.query, overrides))
        out = result.to_dict()
        reranked = any(h.probability is not None for h in result.hits)
        out["answerable"] = bool(result.answerable_hits) if reranked else None
        for name in ("index", "reranker", "bi_encoder", "reader"):
            if isinstance(out["settings"].get(name), str):
                out["settings"][name] = public_name(out["settings"][name])
        return out

    v1.add_api_route(
        "/search", search, methods=["POST"], response_model=schemas.SearchResponse,
        tags=["search"], summary="Answer a question from the index: hits, answerable flag, timings",
    )
    app.include_router(v1)
    app.include_router(v2)
    return app
