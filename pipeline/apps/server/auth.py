"""The optional API key: a bearer token checked in constant time on ``/v1/*``."""

from __future__ import annotations

import hmac
from typing import Awaitable, Callable

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.apps.server.settings import API_KEY_ENV


def api_key_check(api_key: str | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that lets every request through without a key, else only those bearing it."""
    bearer = HTTPBearer(auto_error=False, description=f"required when the server has {API_KEY_ENV} set")

    async def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if api_key is None:
            return
        given = credentials.credentials.encode("utf-8") if credentials else b""
        if not hmac.compare_digest(given, api_key.encode("utf-8")):
            raise HTTPException(401, "A valid API key is required: send 'Authorization: Bearer <key>'.",
                                headers={"WWW-Authenticate": "Bearer"})

    return require_key
