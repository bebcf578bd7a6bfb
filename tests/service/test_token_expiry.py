"""Token lifetimes and revoking one token: ``augsearch token create --expires-in``,
``token list``, ``token revoke --id``, the 401 of an expired token, and the migration that
gives tokens issued before expiry existed a lifetime."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app
from service.db.migrate import upgrade
from service.settings import Settings

runner = CliRunner()


def _env(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "AUGSEARCH_DATABASE_URL": settings.database_url,
        "AUGSEARCH_DATA_DIR": str(tmp_path),
        **extra,
    }


def _cli(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _listed(env: dict[str, str], user: str) -> list[list[str]]:
    return [line.split("\t") for line in _cli(env, "token", "list", "--user", user).splitlines()]


def test_an_expired_token_is_refused_with_the_time_it_expired(
    settings: Settings, tmp_path: Path
) -> None:
    settings.single_user = False
    env = _env(settings, tmp_path)
    short = _cli(env, "token", "create", "--user", "erin", "--expires-in", "1")
    lasting = _cli(env, "token", "create", "--user", "erin", "--expires-in", "30d")
    with TestClient(create_app(settings, reconcile=False)) as http:

        def get(token: str) -> tuple[int, str]:
            response = http.get("/api/v1/datasets", headers={"Authorization": f"Bearer {token}"})
            return response.status_code, response.json().get("detail", "")

        assert get(short)[0] == 200
        time.sleep(1.2)
        status, detail = get(short)
        assert status == 401
        assert detail.startswith("token expired at ") and detail.endswith(" UTC; ask for a new one")
        assert get(lasting)[0] == 200
        http.cookies.set("augsearch_token", short)  # the dashboard's cookie expires alike
        assert http.get("/").status_code == 401
    (_, _, _, first_state, _), (_, _, _, second_state, expires) = _listed(env, "erin")
    assert (first_state, second_state) == ("expired", "live")
    expiry = datetime.strptime(expires, "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    assert abs(expiry - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=2)


def test_the_default_lifetime_is_a_setting(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings, tmp_path, AUGSEARCH_TOKEN_LIFETIME_DAYS="7")
    _cli(env, "token", "create", "--user", "finn")
    [(_, user, _, state, expires)] = _listed(env, "finn")
    expiry = datetime.strptime(expires, "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    assert (user, state) == ("finn", "live")
    assert abs(expiry - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=2)
    for bad in ("0", "soon", "-5d", "3w"):
        args = ["token", "create", "--user", "finn", "--expires-in", bad]
        refused = runner.invoke(app, args, env=env)
        assert refused.exit_code == 1 and "is not a lifetime" in refused.output, bad


def test_revoking_one_token_by_id_leaves_the_others(settings: Settings, tmp_path: Path) -> None:
    settings.single_user = False
    env = _env(settings, tmp_path)
    first, second = (_cli(env, "token", "create", "--user", "gus") for _ in range(2))
    first_id = _listed(env, "gus")[0][0]
    assert (
        _cli(env, "token", "revoke", "--id", first_id) == f"revoked token {first_id} of user 'gus'"
    )
    assert [row[3] for row in _listed(env, "gus")] == ["revoked", "live"]
    with TestClient(create_app(settings, reconcile=False)) as http:
        for token, status in ((first, 401), (second, 200)):
            headers = {"Authorization": f"Bearer {token}"}
            assert http.get("/api/v1/datasets", headers=headers).status_code == status
    unknown = runner.invoke(app, ["token", "revoke", "--id", "999"], env=env)
    assert unknown.exit_code == 1 and "token 999 not found" in unknown.output
    both = runner.invoke(app, ["token", "revoke", "--id", first_id, "--user", "gus"], env=env)
    assert both.exit_code == 2 and "either --user NAME or --id N" in both.output


def test_tokens_issued_before_expiry_existed_get_a_lifetime(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0002")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO augsearch_users (id, name, is_admin, created_at) "
                "VALUES (1, 'old', 0, '2020-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO augsearch_api_tokens (user_id, token_hash, name, created_at, revoked)"
                " VALUES (1, :h, '', '2020-01-01 00:00:00', 0)"
            ),
            {"h": "0" * 64},
        )
    upgrade(url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT expires_at FROM augsearch_api_tokens")).scalar_one()
    engine.dispose()
    expiry = datetime.fromisoformat(str(stored)).replace(tzinfo=UTC)
    assert abs(expiry - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=2)
