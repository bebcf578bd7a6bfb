"""HTTP routes of the tokens API: a user lists and revokes their own tokens (admins: all).

Tokens are created by an operator (``augsearch token create``), never over HTTP: a stolen
token must not be able to mint itself successors that outlive its expiry.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.db.models import ApiToken
from service.deps import CurrentUser, SessionDep
from service.ids import TokenId
from service.users import service
from service.users.schemas import TokenRead

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _read(token: ApiToken, owner: str) -> TokenRead:
    return TokenRead(
        id=token.id,
        user=owner,
        name=token.name,
        state=service.token_state(token),
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
    )


@router.get("")
def list_tokens(session: SessionDep, user: CurrentUser) -> list[TokenRead]:
    """The caller's tokens (an admin's: everyone's), oldest first."""
    return [_read(token, owner) for token, owner in service.list_tokens(session, user)]


@router.post("/{token_id}/revoke")
def revoke_token(token_id: TokenId, session: SessionDep, user: CurrentUser) -> TokenRead:
    """Revoke one token: the caller's own (an admin: anyone's); it gets 401 from now on."""
    return _read(*service.revoke_token(session, token_id, user))
