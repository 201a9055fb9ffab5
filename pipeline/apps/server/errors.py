"""How failures become HTTP responses: pipeline errors, and validation errors that name the limit exceeded."""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Sequence

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from pipeline.errors import (
    ConfigError,
    QASearchError,
    QueryError,
    ServiceUnavailableError,
)

logger = logging.getLogger(__name__)


async def run_inference(awaitable):
    """Await model work; the pipeline's user errors become 422, an unreachable replica 503, anything else a 500."""
    try:
        return await awaitable
    except HTTPException:
        raise  # already an answer (overload 429/503, deadline 503)
    except (QueryError, ConfigError) as exc:
        raise HTTPException(422, str(exc)) from exc
    except ServiceUnavailableError as exc:  # a replica on a Ray cluster failed or timed out
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
    except QASearchError as exc:
        raise HTTPException(400, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - one request's failure must not take the server down
        logger.exception("Inference failed")
        raise HTTPException(500, "Scoring failed inside the server; the error is in the server log.") from exc


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


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = [_describe(e) for e in exc.errors()]
    status = 413 if any(e["type"] in SIZE_ERRORS for e in errors) else 422
    # ASCII-escaped: a field name or value with a lone surrogate must not break the error response.
    body = json.dumps({"detail": errors}, ensure_ascii=True, allow_nan=False, default=repr)
    return Response(body, status_code=status, media_type="application/json")
