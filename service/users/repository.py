"""Every query on users and API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from service.db.models import ApiToken, User
from service.ownership import visible_to


def get_by_name(session: Session, name: str) -> User | None:
    """The user called ``name``, if any."""
    return session.scalars(select(User).where(User.name == name)).first()


def add(session: Session, name: str, is_admin: bool) -> User:
    """Insert a user (flushed so its id is known)."""
    user = User(name=name, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def add_token(
    session: Session, user: User, token_hash: str, name: str, expires_at: datetime
) -> ApiToken:
    """Insert a token hash for ``user``."""
    token = ApiToken(user_id=user.id, token_hash=token_hash, name=name, expires_at=expires_at)
    session.add(token)
    session.flush()
    return token


def live_token(session: Session, token_hash: str) -> tuple[ApiToken, User] | None:
    """A token with that hash that is not revoked (it may have expired) and its owner."""
    stmt = (
        select(ApiToken, User)
        .join(User, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash, ApiToken.revoked.is_(False))
    )
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1])


def revoke_tokens(session: Session, user: User) -> int:
    """Mark every live token of ``user`` revoked; how many were live."""
    stmt = (
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False))
        .values(revoked=True)
    )
    result = session.execute(stmt)
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def _tokens(actor: User | None) -> Select[ApiToken, str]:
    """Tokens ``actor`` may see (None: every token), with their owner's name."""
    stmt = select(ApiToken).join(User, ApiToken.user_id == User.id)
    if actor is not None:
        stmt = visible_to(stmt, ApiToken.user_id, actor)
    return stmt.add_columns(User.name)


def list_tokens(
    session: Session, actor: User | None, owner: User | None = None
) -> list[tuple[ApiToken, str]]:
    """Tokens ``actor`` may see (None: every token) of ``owner`` (None: of anyone), by id,
    with their owner's name."""
    stmt = _tokens(actor)
    if owner is not None:
        stmt = stmt.where(ApiToken.user_id == owner.id)
    return [(row[0], row[1]) for row in session.execute(stmt.order_by(ApiToken.id)).all()]


def get_token(session: Session, token_id: int, actor: User | None) -> tuple[ApiToken, str] | None:
    """The token with that id if ``actor`` may see it (None: any), with its owner's name."""
    row = session.execute(_tokens(actor).where(ApiToken.id == token_id)).first()
    return None if row is None else (row[0], row[1])


def revoke(session: Session, token: ApiToken) -> None:
    """Mark one token revoked."""
    token.revoked = True
    session.flush()
