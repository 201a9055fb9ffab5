"""ASGI middleware of the server: the request-body size limit."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse


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
