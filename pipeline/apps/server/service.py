"""The HTTP API: search, Cohere/Jina-style rerank and vLLM-style score over FastAPI.

A thin shell over the public pipeline API (:class:`~pipeline.qa.QAPipeline`,
:class:`~pipeline.rerank.reranker.Reranker`). :func:`create_app` takes the pipeline and
rerankers as arguments (objects, or callables that load them in the
background), so there is no global state and tests serve tiny models.

* Inference never runs on the event loop: it goes through a
  :class:`~pipeline.rerank.batching.MicroBatcher` per model, which also lets requests
  that arrive together share one model call (``batching``; switch off to compare).
* Every limit lives in :class:`ServerSettings` (flags, ``QA_SEARCH_SERVER_*``
  variables) and in the OpenAPI schema; too-large input gets 413, other bad
  input 422, with a message naming the limit and what was sent.
* Binds 127.0.0.1 by default; ``QA_SEARCH_API_KEY`` makes a bearer token
  mandatory on ``/v1/*``; CORS is off unless origins are configured.

Example::

    >>> from pipeline.apps.server.service import ServerSettings, create_app
    >>> app = create_app(None, rerankers={"tiny": reranker}, settings=ServerSettings())  # doctest: +SKIP
"""

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import logging
import math
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence, Union

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.apps.server.schemas import DOCUMENTS_PER_SEARCH_UNIT, build_schemas
from pipeline.errors import ConfigError, QASearchError, QueryError
from pipeline.qa import QAPipeline
from pipeline.rerank.batching import MicroBatcher
from pipeline.rerank.reranker import Reranker

logger = logging.getLogger(__name__)

API_KEY_ENV = "QA_SEARCH_API_KEY"
CORS_ENV = "QA_SEARCH_CORS_ORIGINS"
SETTINGS_ENV_PREFIX = "QA_SEARCH_SERVER_"

PipelineSource = Union[QAPipeline, Callable[[], QAPipeline], None]
RerankerSource = Union[Mapping[str, Reranker], Callable[[], Mapping[str, Reranker]], None]


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

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, int) and not isinstance(f.default, bool):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError(f"{f.name} must be a positive whole number, got {value!r}.")
        if not 0 <= self.batch_max_wait_ms <= 1000:
            raise ConfigError(f"batch_max_wait_ms must be between 0 and 1000, got {self.batch_max_wait_ms}.")
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
            values[f.name] = _parse_setting(f.name, raw, f.default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "cors_origins" in values:
            values["cors_origins"] = tuple(values["cors_origins"])
        return cls(**values)

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def _parse_setting(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.strip().lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.strip().lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{SETTINGS_ENV_PREFIX}{name.upper()}={raw!r} is not a valid {type(default).__name__}.") from None
    return raw


def public_name(name: str) -> str:
    """A model or index name safe to show clients: a local path becomes its last part."""
    return Path(name).name if Path(name).exists() else name


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


def score_batch(reranker: Reranker, items: Sequence[Sequence[tuple[str, str]]]) -> list[tuple[np.ndarray, int | None]]:
    """Scores several requests' pairs in one model call: ``(probabilities, tokens)`` per request."""
    flat = [pair for item in items for pair in item]
    scores = np.asarray(reranker.score_pairs(flat), dtype=np.float64)
    tokens = pair_tokens(reranker, flat)
    out, offset = [], 0
    for item in items:
        end = offset + len(item)
        out.append((scores[offset:end], None if tokens is None else int(sum(tokens[offset:end]))))
        offset = end
    return out


class BodyTooLarge(HTTPException):
    def __init__(self, sent: str, limit: int):
        super().__init__(
            413, f"The request body is {sent}; the limit is {limit:,} bytes (max_body_bytes)."
        )


class BodyLimit:
    """ASGI middleware: bodies over ``max_bytes`` get 413 (by Content-Length, or while streaming)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(f"{int(declared):,} bytes", self.max_bytes)
            response = JSONResponse({"detail": error.detail}, status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(f"over {self.max_bytes:,} bytes", self.max_bytes)
            return message

        return await self.app(scope, limited, send)


# --------------------------------------------------------------------------- the served models


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
        self.search_batcher = MicroBatcher(
            self._search_batch, enabled=settings.batching,
            max_batch=settings.batch_max_queries, max_wait_ms=settings.batch_max_wait_ms,
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
            self.error = str(exc) if isinstance(exc, QASearchError) else f"{type(exc).__name__}: {exc}"

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
                lambda _key, items, r=reranker: score_batch(r, items), enabled=self.settings.batching,
                max_batch=self.settings.batch_max_pairs, max_wait_ms=self.settings.batch_max_wait_ms,
            )
        self.ready = True

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


async def run_inference(awaitable):
    """Await model work; the pipeline's user errors become 422, anything else a 500 for this request only."""
    try:
        return await awaitable
    except (QueryError, ConfigError) as exc:
        raise HTTPException(422, str(exc)) from exc
    except QASearchError as exc:
        raise HTTPException(400, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - one request's failure must not take the server down
        logger.exception("Inference failed")
        raise HTTPException(500, "Scoring failed inside the server; the error is in the server log.") from exc


# --------------------------------------------------------------------------- validation errors

SIZE_ERRORS = {"string_too_long", "too_long"}


def _limit_name(loc: Sequence[Any], error_type: str) -> str | None:
    field_name = loc[1] if len(loc) > 1 else None
    if error_type == "too_long":
        return "max_documents"
    if error_type == "string_too_long":
        return "max_query_chars" if field_name in ("query", "text_1") else "max_document_chars"
    return None


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error.get("loc", ()))
    out: dict[str, Any] = {"loc": loc, "msg": error.get("msg", ""), "type": error.get("type", "")}
    value = error.get("input")
    limit_name = _limit_name(loc, out["type"])
    if limit_name is not None and hasattr(value, "__len__"):
        unit = "items" if out["type"] == "too_long" else "characters"
        limit = (error.get("ctx") or {}).get("max_length")
        out["limit"] = {"name": limit_name, "value": limit}
        out["sent"] = len(value)
        where = ".".join(str(p) for p in loc[1:]) or "body"
        out["msg"] = f"{where}: {len(value):,} {unit} sent; the limit is {limit:,} ({limit_name})"
    elif isinstance(value, (int, bool)) or (isinstance(value, float) and math.isfinite(value)) or (
        isinstance(value, str) and len(value) <= 100
    ):
        out["input"] = value  # small values are echoed; large ones never are
    return out


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_describe(e) for e in exc.errors()]
    status = 413 if any(e["type"] in SIZE_ERRORS for e in errors) else 422
    # ASCII-escaped: a field name or value with a lone surrogate must not break the error response.
    body = json.dumps({"detail": errors}, ensure_ascii=True, allow_nan=False, default=repr)
    return Response(body, status_code=status, media_type="application/json")


# --------------------------------------------------------------------------- the app


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
    schemas = build_schemas(settings)

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
            413: {"description": "a size limit was exceeded: the message names it and what was sent"},
            422: {"description": "invalid input: the message says which field and why"},
            503: {"description": "the models are still loading, or failed to load (see /readyz)"},
        },
    )
    app.state.service = service
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    bearer = HTTPBearer(auto_error=False, description=f"required when the server has {API_KEY_ENV} set")

    async def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.api_key is None:
            return
        given = credentials.credentials.encode("utf-8") if credentials else b""
        if not hmac.compare_digest(given, settings.api_key.encode("utf-8")):
            raise HTTPException(401, "A valid API key is required: send 'Authorization: Bearer <key>'.",
                                headers={"WWW-Authenticate": "Bearer"})

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
        batcher = service.rerank_batchers[model_id]
        return await run_inference(batcher.submit(pairs, weight=len(pairs)))

    async def rerank(body: schemas.RerankRequest) -> dict[str, Any]:
        model_id, _ = service.reranker(body.model)
        documents = body.documents
        scores, tokens = await score_pairs(model_id, [(body.query, d) for d in documents])
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[: body.top_n or len(documents)]
        results = []
        for i in order:
            result: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if body.return_documents:
                result["document"] = {"text": documents[i]}
            results.append(result)
        return {
            "id": str(uuid.uuid4()),
            "model": model_id,
            "results": results,
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "meta": {"api_version": {"version": "2"},
                     "billed_units": {"search_units": math.ceil(len(documents) / DOCUMENTS_PER_SEARCH_UNIT)}},
        }

    v1.add_api_route(
        "/rerank", rerank, methods=["POST"], response_model=schemas.RerankResponse, response_model_exclude_none=True,
        tags=["rerank"], summary="Rerank documents for a query (Cohere / Jina compatible)",
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
        result = await run_inference(service.search_batcher.submit(body.query, key=tuple(sorted(overrides.items()))))
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
    return app


def serve(index: str, pipeline_options: Mapping[str, Any], settings: ServerSettings) -> None:
    """Load the pipeline for ``index`` and serve it with Uvicorn until interrupted (``qa-search serve``)."""
    import uvicorn

    if not settings.is_loopback() and settings.api_key is None:
        logger.warning("Listening on %s without an API key: anyone who can reach it can use it (set %s).",
                       settings.host, API_KEY_ENV)
    pipeline = QAPipeline.load(index, **pipeline_options)
    app = create_app(pipeline, settings=settings)
    logger.info("Serving %s on http://%s:%d (batching %s)", index, settings.host, settings.port,
                "on" if settings.batching else "off")
    uvicorn.run(
        app, host=settings.host, port=settings.port, limit_concurrency=settings.max_concurrency,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
        timeout_graceful_shutdown=10,
    )
