"""``qa-search serve``: the HTTP API (FastAPI) over the same pipeline as the CLI and the UI.

``settings`` (flags and ``QA_SEARCH_SERVER_*``) → ``limits`` → ``schemas`` (request/response types);
``service`` (loaded models behind micro-batchers), ``auth`` (API key), ``middleware`` (body size),
``errors`` (failures as HTTP responses), ``app`` (:func:`create_app`, the routes), ``run`` (Uvicorn).
"""

from pipeline.apps.server.app import create_app
from pipeline.apps.server.limits import Limits
from pipeline.apps.server.run import serve
from pipeline.apps.server.settings import ServerSettings

__all__ = ["Limits", "ServerSettings", "create_app", "serve"]
