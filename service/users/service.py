"""Accounts: the local user of single-user mode, tokens (created, listed, revoked, expiring)
and token authentication."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from typing import Literal

from sqlalchemy.orm import Session

from service.db.models import ApiToken, User, utcnow
from service.errors import Conflict, InvalidInput, NotFound, Unauthorized
from service.settings import DEFAULT_TOKEN_LIFETIME_DAYS
from service.users import repository

LOCAL_USER = "local"
TOKEN_PREFIX = "aug_"
# 32 random bytes, URL-safe base64: 43 characters after the prefix.
_TOKEN_BYTES = 32
_MAX_TOKEN_CHARS = 200
_MAX_NAME_CHARS = 100
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
TokenState = Literal["live", "expired", "revoked"]


def hash_token(token: str) -> str:
    """SHA-256 of a token: tokens are random and long, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_local_user(session: Session) -> User:
    """The owner of everything in single-user mode (an admin), created on first use."""
    user = repository.get_by_name(session, LOCAL_USER)
    return user if user is not None else repository.add(session, LOCAL_USER, is_admin=True)


def parse_lifetime(text: str) -> timedelta:
    """A token lifetime written as seconds or with a unit: ``3600``, ``90m``, ``12h``, ``30d``.

    Raises:
        InvalidInput: if it is not such a duration, or is zero.
    """
    match = _DURATION.match(text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise InvalidInput(f"{text!r} is not a lifetime: write e.g. 3600, 90m, 12h or 30d")
    return timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])


def create_user_with_token(
    session: Session,
    name: str,
    is_admin: bool = False,
    token_name: str = "",
    expires_in: timedelta | None = None,
) -> tuple[User, str]:
    """Create a user (or reuse an existing one) and a new token; the clear token is returned once.

    Args:
        session: the session.
        name: the user's name.
        is_admin: whether the user is an admin.
        token_name: a label of the token.
        expires_in: how long the token works (default: `DEFAULT_TOKEN_LIFETIME_DAYS`; the
            CLI passes the configured ``token_lifetime_days``).

    Raises:
        InvalidInput: if the name is empty or too long, or the lifetime is not positive.
        Conflict: if the user exists with a different admin flag.
    """
    lifetime = expires_in if expires_in is not None else timedelta(days=DEFAULT_TOKEN_LIFETIME_DAYS)
    if lifetime <= timedelta(0):
        raise InvalidInput("a token's lifetime must be positive")
    name = name.strip()
    if not name or len(name) > _MAX_NAME_CHARS:
        raise InvalidInput(f"a user name has 1 to {_MAX_NAME_CHARS} characters")
    user = repository.get_by_name(session, name)
    if user is None:
        user = repository.add(session, name, is_admin)
    elif user.is_admin != is_admin:
        raise Conflict(f"user {name!r} exists with admin={user.is_admin}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
    repository.add_token(session, user, hash_token(token), token_name, utcnow() + lifetime)
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


def token_state(token: ApiToken) -> TokenState:
    """Whether a token works (``live``), or why not."""
    if token.revoked:
        return "revoked"
    return "expired" if token.expires_at <= utcnow() else "live"


def list_tokens(
    session: Session, actor: User | None, owner_name: str | None = None
) -> list[tuple[ApiToken, str]]:
    """Tokens with their owner's name, oldest first: the caller's own (every one for an admin,
    or with ``actor`` None for the operator's CLI), of one user when ``owner_name`` is given.

    Raises:
        NotFound: no user has that name.
    """
    owner = None
    if owner_name is not None:
        owner = repository.get_by_name(session, owner_name.strip())
        if owner is None:
            raise NotFound(f"user {owner_name!r} not found")
    return repository.list_tokens(session, actor, owner)


def revoke_token(session: Session, token_id: int, actor: User | None) -> tuple[ApiToken, str]:
    """Revoke one token (idempotent): the caller's own, any for an admin or, with ``actor``
    None, for the operator's CLI. Another user's token answers NotFound, like an unknown id.

    Returns:
        The token and its owner's name.
    """
    found = repository.get_token(session, token_id, actor)
    if found is None:
        raise NotFound(f"token {token_id} not found")
    repository.revoke(session, found[0])
    return found


def authenticate(session: Session, authorization: str | None) -> User:
    """The user a ``Bearer`` Authorization header belongs to.

    Raises:
        Unauthorized: if the header is missing, malformed, or the token unknown, revoked or
            expired (the message says when it expired).
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
    row, user = found
    if token_state(row) == "expired":
        raise Unauthorized(
            f"token expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC; ask for a new one"
        )
    return user
