"""Row-level ownership: every query on owned rows goes through ``visible_to``."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from service.db.models import User

S = TypeVar("S", bound=Select[Any])


def visible_to(stmt: S, owner_column: InstrumentedAttribute[int], user: User) -> S:
    """Restrict ``stmt`` to ``user``'s rows (``owner_column`` is the model's owner id).

    Admins see everything. Another user's rows are filtered out, so their ids answer 404,
    never 403.
    """
    if user.is_admin:
        return stmt
    return stmt.where(owner_column == user.id)
