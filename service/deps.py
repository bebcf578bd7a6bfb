"""FastAPI dependencies and their ``Annotated`` aliases (``SessionDep``, ``CurrentUser``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from service.db.models import User
from service.runtime import Runtime
from service.settings import Settings
from service.users.auth import check_same_origin, resolve_user

# The trivial dependencies are ``async def`` on purpose: FastAPI runs a plain ``def``
# dependency in the thread pool, a thread hop per request for an attribute read.


async def get_runtime(request: Request) -> Runtime:
    """The resources built in the lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    """The service settings."""
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """One session per request; the request boundary commits (or rolls back on error)."""
    with runtime.transaction() as session:
        yield session


# Sessions open at once per process: below the engine's pool (5 + 10 overflow), so requests
# queue here, without holding a worker thread, instead of taking every thread while waiting
# for a connection whose holder then needs a thread to commit (a deadlock until the pool's
# 30 s timeout).
SESSION_CONCURRENCY = 12

# scope="function": the commit happens before the response is sent, so a client that has its
# 201 can read what it wrote (the default scope commits after the response has left).
SessionDep = Annotated[
    Session, Depends(get_session, scope="function", max_concurrency=SESSION_CONCURRENCY)
]


def get_current_user(request: Request, session: SessionDep, runtime: RuntimeDep) -> User:
    """The caller: the local user in single-user mode, else the owner of the bearer token or of
    the dashboard's cookie (``service.users.auth``)."""
    return resolve_user(request, session, runtime)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_caller(request: Request, runtime: RuntimeDep) -> User:
    """The caller, resolved without a database round-trip in single-user mode (hot routes).

    Also used where the caller must be known before the body is read (uploads).
    """
    if runtime.settings.single_user and runtime.local_user is not None:
        check_same_origin(request)
        return runtime.local_user

    def _lookup() -> User:
        with runtime.transaction() as session:
            return resolve_user(request, session, runtime)

    return await run_in_threadpool(_lookup)


Caller = Annotated[User, Depends(get_caller)]
