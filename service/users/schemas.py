"""Response models of the tokens API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from service.users.service import TokenState


class TokenRead(BaseModel):
    """An API token as its owner (or an admin) sees it; the token itself is never shown again.

    Attributes:
        id: its id (``POST /api/v1/tokens/{id}/revoke``, ``augsearch token revoke --id``).
        user: its owner's name.
        name: its label.
        state: ``live``, ``expired`` or ``revoked``.
        created_at: when it was created.
        expires_at: when it stops working.
        last_used_at: when it was last used, if recorded.
    """

    id: int
    user: str
    name: str
    state: TokenState
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None = None
