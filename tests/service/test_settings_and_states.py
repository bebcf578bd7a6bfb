"""Settings defaults and refusals; the search state machine's transitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.db.models import Search
from service.errors import Conflict
from service.searches.states import TRANSITIONS, SearchState, can_move, move
from service.settings import Settings


def test_defaults_live_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUGSEARCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUGSEARCH_MAX_TRIALS", "7")
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'augsearch.db'}"
    assert settings.optuna_storage_url == settings.database_url
    assert settings.artifact_store_location == str(tmp_path / "artifacts")
    assert settings.max_trials == 7 and settings.is_sqlite


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"single_user": True, "host": "0.0.0.0"}, "loopback"),
        ({"environment": "production"}, "PostgreSQL"),
        ({"environment": "production", "single_user": True}, "single-user"),
        ({"max_page_size": 0}, "greater than 0"),
    ],
)
def test_unsafe_or_invalid_settings_are_refused(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_every_state_is_in_the_machine_and_completed_is_final() -> None:
    assert set(TRANSITIONS) == set(SearchState)
    assert TRANSITIONS[SearchState.COMPLETED] == frozenset()
    assert can_move("queued", SearchState.RUNNING)
    assert not can_move("queued", SearchState.COMPLETED)
    assert not can_move("completed", SearchState.QUEUED)


def test_move_stamps_times_and_refuses_illegal_steps() -> None:
    search = Search(id=1, state="queued")
    move(search, SearchState.RUNNING)
    assert search.started_at is not None and search.finished_at is None
    move(search, SearchState.FAILED, error="boom")
    assert search.finished_at is not None and search.error == "boom"
    with pytest.raises(Conflict, match="cannot become completed"):
        move(search, SearchState.COMPLETED)
    move(search, SearchState.QUEUED)
    assert search.error is None and search.finished_at is None
