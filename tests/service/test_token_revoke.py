"""``augsearch token revoke --user NAME``: every token of the user stops working at once."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app
from service.settings import Settings

runner = CliRunner()


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {"AUGSEARCH_DATABASE_URL": settings.database_url, "AUGSEARCH_DATA_DIR": str(tmp_path)}


def _token(env: dict[str, str], user: str) -> str:
    created = runner.invoke(app, ["token", "create", "--user", user], env=env)
    assert created.exit_code == 0, created.output
    return created.output.strip()


def test_revoked_tokens_get_401_and_others_keep_working(settings: Settings, tmp_path: Path) -> None:
    settings.single_user = False
    env = _env(settings, tmp_path)
    first, second, other = _token(env, "carol"), _token(env, "carol"), _token(env, "dave")
    with TestClient(create_app(settings, reconcile=False, dashboard=True)) as http:

        def status(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return http.get("/api/v1/datasets", headers=headers).status_code

        assert [status(t) for t in (first, second, other)] == [200, 200, 200]
        revoked = runner.invoke(app, ["token", "revoke", "--user", "carol"], env=env)
        assert revoked.exit_code == 0, revoked.output
        assert "revoked 2 tokens of user 'carol'" in revoked.output
        assert [status(t) for t in (first, second, other)] == [401, 401, 200]
        denied = http.get("/api/v1/datasets", headers={"Authorization": f"Bearer {first}"})
        assert denied.json()["detail"] == "invalid or revoked token"
        http.cookies.set("augsearch_token", second)  # the dashboard's cookie is refused too
        assert http.get("/").status_code == 401
        # A new token for the same user works; revoking again counts only live tokens.
        fresh = _token(env, "carol")
        assert status(fresh) == 200
        again = runner.invoke(app, ["token", "revoke", "--user", "carol"], env=env)
        assert "revoked 1 token of user 'carol'" in again.output
        assert status(fresh) == 401


def test_revoking_an_unknown_user_fails_with_a_message(settings: Settings, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["token", "revoke", "--user", "nobody"], env=_env(settings, tmp_path)
    )
    assert result.exit_code == 1 and "user 'nobody' not found" in result.output
    missing = runner.invoke(app, ["token", "revoke"], env=_env(settings, tmp_path))
    assert missing.exit_code != 0 and "--user" in missing.output
