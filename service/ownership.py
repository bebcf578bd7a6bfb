"""Row-level ownership: every query on owned rows goes through ``visible_to``."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Mapped

from service.db.models import User


class Owned(Protocol):
    """A model with an ``owner_id`` column."""

    owner_id: Mapped[int]


S = TypeVar("S", bound=Select[Any])


def visible_to(stmt: S, model: type[Owned], user: User) -> S:
    """Restrict ``stmt`` to ``user``'s rows; admins see everything.

    Another user's rows are filtered out, so their ids answer 404, never 403.
    """
    if user.is_admin:
        return stmt
    return stmt.where(model.owner_id == user.id)
