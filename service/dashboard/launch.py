"""The launch form's server side: the API's own validation, errors keyed by form field."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.db.models import Search, User
from service.errors import DomainError
from service.searches import service as searches
from service.searches.schemas import SearchCreate
from service.settings import Settings

GENERAL = "_form"
_FIELD_IN_MESSAGE = re.compile(r"^(spec(?:\.[A-Za-z_][\w]*)+) ")


def _loc_key(loc: tuple[Any, ...], prefix: str = "") -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    # A model-level validator reports no field; a typed union adds its branch name.
    return prefix + ".".join(parts) if parts else (prefix.rstrip(".") or GENERAL)


def validation_errors(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """Pydantic errors as ``{dotted field path: message}`` (first message per field)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        out.setdefault(_loc_key(tuple(err["loc"]), prefix), str(err["msg"]))
    return out


def domain_errors(exc: DomainError) -> dict[str, str]:
    """A service error as field errors: the pydantic cause's locations, or the named field."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return validation_errors(cause, prefix="spec.")
    match = _FIELD_IN_MESSAGE.match(exc.message)
    if match is not None:
        return {match.group(1): exc.message}
    if "dataset" in exc.message and "spec.dataset" not in exc.message:
        return {"dataset_id": exc.message}
    return {GENERAL: exc.message}


def launch(session: Session, user: User, settings: Settings, body: dict[str, Any]) -> Search:
    """Validate the form body as the API would (``SearchCreate``) and launch the search.

    Raises:
        ValidationError: the body does not fit ``SearchCreate``.
        DomainError: the service refused the spec, the dataset or the quota.
    """
    return searches.launch(session, SearchCreate.model_validate(body), user, settings)
