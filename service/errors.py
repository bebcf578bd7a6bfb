"""Domain exceptions and their one mapping onto HTTP status codes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel


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


def install_error_handlers(app: FastAPI) -> None:
    """Answer every domain error as ``{"detail": message}`` with its status code."""

    async def _handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    app.add_exception_handler(DomainError, _handle)
