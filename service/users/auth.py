"""Who a request acts for: bearer tokens, the dashboard's cookie, and the CSRF rules.

Three ways in, checked in this order:

* single-user mode: the local user, with no credentials at all (loopback only);
* ``Authorization: Bearer <token>`` (scripts, the CLI, the Python client);
* the ``augsearch_token`` cookie set by the dashboard's sign-in page (HttpOnly,
  SameSite=Strict). A cookie travels on its own, so a request that changes state and is
  authenticated by it must also carry the ``X-Requested-With`` header, which a cross-site page
  cannot add without a CORS preflight that the service refuses.

Whatever the credentials, a state-changing request sent by a browser from another origin
(``Origin`` differing from ``Host``, or ``Sec-Fetch-Site: cross-site``) is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from sqlalchemy.orm import Session

from service.db.models import User
from service.errors import Forbidden, Unauthorized
from service.runtime import Runtime
from service.users.service import authenticate, ensure_local_user

TOKEN_COOKIE = "augsearch_token"
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser sent from another site.

    Raises:
        Forbidden: ``Origin`` names another host than ``Host``, or ``Sec-Fetch-Site`` says the
            request is cross-site.
    """
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site", "") in ("cross-site", "same-site"):
        raise Forbidden("cross-site requests may not change anything")
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
        raise Forbidden(f"requests from origin {origin!r} may not change anything")


def _cookie_user(request: Request, session: Session, cookie: str) -> User:
    if request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER):
        raise Forbidden(
            f"a request signed in by cookie must send the {CSRF_HEADER} header to change anything"
        )
    return authenticate(session, f"Bearer {cookie}")


def resolve_user(request: Request, session: Session, runtime: Runtime) -> User:
    """The user ``request`` acts for (see the module rules).

    Raises:
        Unauthorized: no valid token in the header or the cookie.
        Forbidden: a cross-site state change, or a cookie-authenticated one without the
            CSRF header.
    """
    check_same_origin(request)
    if runtime.settings.single_user:
        return runtime.local_user or ensure_local_user(session)
    header = request.headers.get("authorization")
    if header:
        return authenticate(session, header)
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie:
        return _cookie_user(request, session, cookie)
    raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
