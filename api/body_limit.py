"""A bound on request bodies: over `max_bytes` is a 413 `body_too_large`, and nothing runs.

A pure ASGI middleware, so that it sees the body before any handler: a Content-Length over
the limit is refused before a byte is read, and a chunked body is counted as it streams and
refused as soon as it passes the limit. Either way the route never starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api.errors import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CODE = "body_too_large"


class BodyTooLarge(Exception):
    """Raised into the app when a streamed body passes the limit."""


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 in the API's error shape."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.refuse(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(f"request body over {self.max_bytes} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # Once the body is refused, whatever the app makes of the interruption (FastAPI
            # turns it into a 400) is dropped: the client gets the 413 below instead.
            if exceeded and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):  # the app may also let it through
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not started:
            await self.refuse(scope, receive, send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The 413; the connection closes, since the rest of the body is never read."""
        limit = self.max_bytes
        message = (
            f"the request body is larger than the limit of {_size(limit)}; select fewer ids,"
            " or export with a filter instead of listing the ids"
        )
        response = error_response(
            413, CODE, message, {"maxBytes": limit}, headers={"Connection": "close"}
        )
        await response(scope, receive, send)


def content_length(scope: Scope) -> int | None:
    """The declared Content-Length, None when absent or not a number (the server's to judge)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _size(n: int) -> str:
    """`1 MiB`, `64 KiB` or `100 bytes`: the limit as a person reads it."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"
