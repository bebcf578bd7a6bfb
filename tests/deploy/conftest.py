"""Fixtures for the deployment tests: the parsed compose file, manifests and Settings names."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deployfiles import COMPOSE_ENV, DOCKER_DIR, interpolate_tree, settings_env_names


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    """docker/compose.yaml as parsed YAML (merge keys applied), before interpolation."""
    return yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """docker/compose.yaml interpolated with ``COMPOSE_ENV`` and the file's defaults."""
    return interpolate_tree(compose_raw, COMPOSE_ENV)


@pytest.fixture(scope="session")
def settings_names() -> set[str]:
    """AUGSEARCH_* names of the fields of service.settings.Settings."""
    names = settings_env_names()
    assert names is not None, "service/settings.py must define Settings"
    return names
