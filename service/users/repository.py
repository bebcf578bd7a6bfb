"""Every query on users and API tokens."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db.models import ApiToken, User


def get_by_name(session: Session, name: str) -> User | None:
    """The user called ``name``, if any."""
    return session.scalars(select(User).where(User.name == name)).first()


def add(session: Session, name: str, is_admin: bool) -> User:
    """Insert a user (flushed so its id is known)."""
    user = User(name=name, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def add_token(session: Session, user: User, token_hash: str, name: str) -> ApiToken:
    """Insert a token hash for ``user``."""
    token = ApiToken(user_id=user.id, token_hash=token_hash, name=name)
    session.add(token)
    session.flush()
    return token


def live_token(session: Session, token_hash: str) -> tuple[ApiToken, User] | None:
    """A live (not revoked) token with that hash and its owner, if any."""
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
