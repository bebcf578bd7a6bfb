"""Path parameters naming a stored object: bounded, so no id overflows a database integer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ID = 2**31 - 1

DatasetId = Annotated[int, Path(ge=1, le=MAX_ID, description="A dataset's id.")]
SearchId = Annotated[int, Path(ge=1, le=MAX_ID, description="A search's id.")]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID, description="An API token's id.")]
