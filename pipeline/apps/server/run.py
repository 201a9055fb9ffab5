"""``qa-search serve``: load the pipeline and serve it with Uvicorn."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from pipeline.apps.server.app import create_app
from pipeline.apps.server.settings import API_KEY_ENV, ServerSettings
from pipeline.qa import QAPipeline

logger = logging.getLogger(__name__)


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
