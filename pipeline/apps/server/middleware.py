"""ASGI middleware of the server: who is asking, the request-body size and time limits, and
dropping the work of a client that went away."""

from __future__ import annotations

import asyncio
import hashlib
import time

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from pipeline.apps.server.admission import current_client


class BodyTooLarge(HTTPException):
    def __init__(self, sent: str, limit: int):
        super().__init__(
            413, f"The request body is {sent}; the limit is {limit:,} bytes (max_body_bytes)."
        )


class BodyTooSlow(HTTPException):
    def __init__(self, limit: float):
        super().__init__(408, f"The request body did not arrive within {limit:g} s (body_timeout_s).",
                         headers={"Connection": "close"})


class BodyLimit:
    """ASGI middleware: bodies over ``max_bytes`` get 413 (by Content-Length, or while streaming); a body not
    received in full within ``timeout_s`` of the request's start gets 408 (a slowloris client holds no
    worker for longer than that)."""

    def __init__(self, app, max_bytes: int, timeout_s: float = 10.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(f"{int(declared):,} bytes", self.max_bytes)
            response = JSONResponse({"detail": error.detail}, status_code=413)
            return await response(scope, receive, send)
        received = 0
        deadline = time.monotonic() + self.timeout_s
        complete = False

        async def limited():
            nonlocal received, complete
            if complete:
                return await receive()  # after the body: only a disconnect, no deadline
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                raise BodyTooSlow(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(f"over {self.max_bytes:,} bytes", self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        return await self.app(scope, limited, send)


def client_id(scope) -> str:
    """Who is asking: the bearer token (hashed, never kept) when there is one, else the peer address."""
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"")
    if auth.lower().startswith(b"bearer ") and len(auth) > 7:
        return "key:" + hashlib.sha256(auth[7:].strip()).hexdigest()[:16]
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"


class ClientWatch:
    """ASGI middleware: names the client for admission and fair turns (:data:`current_client`), and cancels
    the request's handler when the client disconnects before its answer, so its queued work is dropped."""

    def __init__(self, app, admission=None):
        self.app = app
        self.admission = admission

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        who = client_id(scope)
        if self.admission is not None and scope.get("method") == "POST" and self.admission.at_limit(who):
            # A client already holding its whole share gets 429 before its body is read or parsed: a client
            # hammering with large requests costs the event loop almost nothing (no JSON, no validation).
            exc = self.admission.refuse_client(who)
            response = JSONResponse({"detail": exc.detail}, status_code=exc.status,
                                    headers={"Retry-After": str(exc.retry_after), "Connection": "close"})
            return await response(scope, receive, send)
        token = current_client.set(who)
        body_done = asyncio.Event()
        gone = asyncio.Event()

        async def watched():
            if body_done.is_set():
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_done.set()
            return message

        answered = False

        async def sending(message):
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, watched, sending))

        async def watch():
            await body_done.wait()
            message = await receive()  # the next message after the body: the client leaving (or our answer sent)
            if message["type"] == "http.disconnect":
                gone.set()
                if not answered:
                    handler.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await handler
        except asyncio.CancelledError:
            if not gone.is_set():
                handler.cancel()  # the server is stopping, not a client leaving: stop the handler too
                raise
        finally:
            watcher.cancel()
            current_client.reset(token)
