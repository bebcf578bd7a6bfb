"""Every query on users and API tokens."""

from __future__ import annotations

from sqlalchemy import select
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


def user_for_token_hash(session: Session, token_hash: str) -> User | None:
    """The owner of a live (not revoked) token, if any."""
    stmt = (
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash, ApiToken.revoked.is_(False))
    )
    return session.scalars(stmt).first()
