"""Accounts: the local user of single-user mode, token creation and token authentication."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from service.db.models import User
from service.errors import Conflict, InvalidInput, NotFound, Unauthorized
from service.users import repository

LOCAL_USER = "local"
TOKEN_PREFIX = "aug_"
# 32 random bytes, URL-safe base64: 43 characters after the prefix.
_TOKEN_BYTES = 32
_MAX_TOKEN_CHARS = 200
_MAX_NAME_CHARS = 100


def hash_token(token: str) -> str:
    """SHA-256 of a token: tokens are random and long, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_local_user(session: Session) -> User:
    """The owner of everything in single-user mode (an admin), created on first use."""
    user = repository.get_by_name(session, LOCAL_USER)
    return user if user is not None else repository.add(session, LOCAL_USER, is_admin=True)


def create_user_with_token(
    session: Session, name: str, is_admin: bool = False, token_name: str = ""
) -> tuple[User, str]:
    """Create a user (or reuse an existing one) and a new token; the clear token is returned once.

    Raises:
        InvalidInput: if the name is empty or too long.
        Conflict: if the user exists with a different admin flag.
    """
    name = name.strip()
    if not name or len(name) > _MAX_NAME_CHARS:
        raise InvalidInput(f"a user name has 1 to {_MAX_NAME_CHARS} characters")
    user = repository.get_by_name(session, name)
    if user is None:
        user = repository.add(session, name, is_admin)
    elif user.is_admin != is_admin:
        raise Conflict(f"user {name!r} exists with admin={user.is_admin}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
    repository.add_token(session, user, hash_token(token), token_name)
    return user, token


def revoke_user_tokens(session: Session, name: str) -> int:
    """Revoke every token of the user called ``name`` (the account itself stays).

    Tokens are stored only as hashes, so a user's tokens are revoked together; the user gets a
    new one with ``create_user_with_token``.

    Returns:
        How many live tokens were revoked (0 when the user had none left).

    Raises:
        NotFound: no user has that name.
    """
    user = repository.get_by_name(session, name.strip())
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return repository.revoke_tokens(session, user)


def authenticate(session: Session, authorization: str | None) -> User:
    """The user a ``Bearer`` Authorization header belongs to.

    Raises:
        Unauthorized: if the header is missing, malformed, or the token unknown or revoked.
    """
    if not authorization:
        raise Unauthorized("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise Unauthorized("invalid or revoked token")
    digest = hash_token(token)
    found = repository.live_token(session, digest)
    # The lookup is by hash, so timing reveals nothing about the token itself; the constant-time
    # comparison keeps it so even if the lookup were ever made approximate.
    if found is None or not hmac.compare_digest(found[0].token_hash, digest):
        raise Unauthorized("invalid or revoked token")
    return found[1]
