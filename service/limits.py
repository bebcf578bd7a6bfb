"""Request body caps, enforced while the body streams in (a pure ASGI middleware).

Starlette reads bodies without a limit, and the multipart parser spools a whole upload before
a route sees it, so the cap has to sit in front of the application: a declared
``Content-Length`` over the cap is answered 413 before one byte is read, and a chunked body is
counted as it arrives and cut off with 413 as soon as it passes the cap.

A request whose framing bounds its body goes straight through: one plain ``Content-Length``
within the cap on HTTP/1.x or HTTP/2, or an HTTP/1.x request with neither ``Content-Length``
nor ``Transfer-Encoding`` (no body at all, RFC 9112 6.3: every plain GET). The HTTP server
never hands the application more body than that framing declares, so there is nothing to
count, and the hot read paths pay nothing for the cap. Anything else (chunked, a repeated or
malformed length, HTTP/2 without a length, an unknown protocol version) is counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


class BodySizeLimit:
    """Cap the body of every HTTP request; some paths get their own (larger) cap.

    Args:
        app: The wrapped application.
        default_limit: Cap in bytes for every path not in ``limits``.
        limits: Exact request paths mapped to their cap (e.g. the upload route).
    """

    def __init__(self, app: ASGIApp, default_limit: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default_limit)
        declared, must_count = _body_framing(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit)
            return
        if not must_count:
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # HTTPException passes through FastAPI's body parsing untouched.
                    raise HTTPException(413, _too_large(limit))
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except HTTPException as exc:
            # Raised by counted_receive outside a route (no exception handler ran).
            if exc.status_code != 413 or started:
                raise
            await _send_413(send, limit)


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared ``Content-Length`` (None: absent or unreadable), and whether the body must
    be counted as it arrives.

    Trusted to bound the body: one ``Content-Length`` of plain digits on HTTP/1.x or HTTP/2
    (whose servers refuse a body longer than it), or, on HTTP/1.x only, the absence of both
    ``Content-Length`` and ``Transfer-Encoding`` (no body). Everything else is counted: a
    chunked body, a repeated or malformed length, HTTP/2 without a length, other or unknown
    protocol versions.
    """
    version = scope.get("http_version")
    http1 = isinstance(version, str) and version.startswith("1.")
    declared: int | None = None
    must_count = not (http1 or version == "2")
    for name, value in scope["headers"]:
        if name == b"content-length":
            if declared is not None or not value.isdigit():
                return None, True
            declared = int(value)
        elif name == b"transfer-encoding":
            must_count = True
    return declared, must_count or (declared is None and not http1)


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": _too_large(limit)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
