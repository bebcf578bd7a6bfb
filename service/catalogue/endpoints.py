"""HTTP routes of the ops catalogue and presets."""

from __future__ import annotations

from fastapi import APIRouter

from service.catalogue import service
from service.catalogue.schemas import OpRead, PresetRead
from service.deps import CurrentUser
from service.errors import NotFound

router = APIRouter(tags=["catalogue"])


@router.get("/ops")
def list_ops(_user: CurrentUser) -> list[OpRead]:
    """The augmentation ops: kind, sign, magnitude-to-argument ranges (standard and wide)."""
    return list(service.list_ops())


@router.get("/presets")
def list_presets(_user: CurrentUser) -> list[PresetRead]:
    """The preset policies."""
    return list(service.list_presets())


@router.get("/presets/{name}")
def show_preset(name: str, _user: CurrentUser) -> PresetRead:
    """One preset policy by name."""
    for preset in service.list_presets():
        if preset.name == name:
            return preset
    raise NotFound(f"preset {name!r} not found")
