"""Domain exceptions and their one mapping onto HTTP status codes."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)
# How deep a validation error echoes the input it refused: enough to show a field's value,
# never enough to hit the recursion limit while rendering a deeply nested body.
_MAX_ECHO_DEPTH = 8


class DomainError(Exception):
    """Base of every error the service reports to a client; ``status_code`` says how."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The object does not exist, or belongs to another user (answered the same way)."""

    status_code = 404


class Conflict(DomainError):
    """The object's current state forbids the request (e.g. deleting a dataset in use)."""

    status_code = 409


class InvalidInput(DomainError):
    """The request is well-formed but its content is not acceptable."""

    status_code = 422


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    status_code = 403


class Unauthorized(DomainError):
    """No valid credentials."""

    status_code = 401


class PayloadTooLarge(DomainError):
    """The body exceeds the configured limit."""

    status_code = 413


class QuotaExceeded(DomainError):
    """A per-user limit is reached."""

    status_code = 429


class Unavailable(DomainError):
    """A dependency (database, storage, a peer package) is not reachable."""

    status_code = 503


class ErrorRead(BaseModel):
    """The body of every error: a message, or FastAPI's list of validation errors."""

    detail: str | list[dict[str, Any]]


_ERROR = {"model": ErrorRead}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "a body that cannot be parsed (e.g. broken multipart)"},
    401: {**_ERROR, "description": "missing, invalid or revoked token"},
    403: {**_ERROR, "description": "not allowed (admin only, cross-site, CSRF header missing)"},
    404: {**_ERROR, "description": "unknown id, or another user's"},
    409: {**_ERROR, "description": "the object's state forbids the request"},
    413: {**_ERROR, "description": "the body exceeds the configured limit"},
    422: {**_ERROR, "description": "invalid input"},
    429: {**_ERROR, "description": "a per-user quota is reached"},
    503: {**_ERROR, "description": "a dependency is unavailable"},
}


def _json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as strict JSON: non-finite floats as their JSON-ish names ("NaN",
    "Infinity"), containers cut off below ``_MAX_ECHO_DEPTH`` levels, other objects as text.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, str | int | float):
        return value
    if depth >= _MAX_ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value]
    return str(value)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every domain error as ``{"detail": message}`` with its status code, validation
    errors as FastAPI's list made strict JSON, and a client gone mid-body quietly."""

    async def _handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own handler echoes each refused input as it was parsed: a NaN in the body
        # then cannot be rendered (strict JSON) and a deeply nested one exceeds the recursion
        # limit, both a 500 instead of this 422.
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": [_json_safe(e) for e in exc.errors()]}, status_code=422)

    async def _gone(request: Request, _exc: Exception) -> JSONResponse:
        # Nobody reads this answer; the body parser has already closed its spooled files.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "the client disconnected"}, status_code=400)

    app.add_exception_handler(DomainError, _handle)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ClientDisconnect, _gone)
