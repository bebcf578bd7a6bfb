"""Offset pagination shared by the list endpoints."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict

from service.deps import SettingsDep
from service.errors import InvalidInput


class PageParams(BaseModel):
    """Where a page starts and how long it is."""

    offset: int = 0
    limit: int = 50


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing and the total number of items."""

    model_config = ConfigDict(extra="forbid")
    items: list[T]
    total: int
    offset: int
    limit: int


def get_page_params(
    settings: SettingsDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> PageParams:
    """Read ``offset``/``limit`` and refuse pages larger than the configured maximum."""
    if limit > settings.max_page_size:
        raise InvalidInput(f"limit must be at most {settings.max_page_size}")
    return PageParams(offset=offset, limit=limit)


PageDep = Annotated[PageParams, Depends(get_page_params)]
