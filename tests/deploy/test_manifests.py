"""deploy/kubernetes: well-formed manifests, GPU workers, secrets, probes and settings."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from deployfiles import DOCKER_DIR, K8S_DIR, final_stage, load_dockerfile, load_manifests, pod_spec

MANIFESTS = list(load_manifests())
# The image's USER; pods must run as the same uid so that the volumes they write stay shared.
IMAGE_UID = int(
    next(
        i.args
        for i in final_stage(load_dockerfile(DOCKER_DIR / "worker.Dockerfile"))
        if i.keyword == "USER"
    ).split(":")[0]
)


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in MANIFESTS if doc["kind"] == kind}


def _workloads() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path, doc in MANIFESTS:
        spec = pod_spec(doc)
        if spec is not None:
            found.append((f"{path.name}:{doc['metadata']['name']}", spec))
    return found


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _is_worker(spec: dict[str, Any]) -> bool:
    return any("/worker:" in c["image"] for c in spec["containers"])


def test_the_expected_manifests_exist() -> None:
    files = {path.name for path in K8S_DIR.glob("*.yaml")}
    assert {
        "worker-deployment.yaml",
        "worker-job.yaml",
        "api-deployment.yaml",
        "migrate-job.yaml",
        "secret.example.yaml",
    } <= files


@pytest.mark.parametrize(("path", "doc"), MANIFESTS, ids=lambda v: getattr(v, "name", ""))
def test_manifest_is_well_formed(path: Path, doc: dict[str, Any]) -> None:
    assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], path.name
    assert isinstance(doc.get("kind"), str) and doc["kind"], path.name
    assert doc.get("metadata", {}).get("name"), f"{path.name}: a {doc['kind']} without a name"
    assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "augsearch"


def test_worker_pods_take_exactly_one_gpu_and_drain() -> None:
    workers = [(name, spec) for name, spec in _workloads() if _is_worker(spec)]
    assert {name.split(":")[0] for name, _ in workers} == {
        "worker-deployment.yaml",
        "worker-job.yaml",
    }
    for name, spec in workers:
        (container,) = spec["containers"]
        limits = container["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) == 1, f"{name}: one GPU per worker pod"
        # Room for SIGTERM to finish the running trial before the kubelet kills the pod.
        assert spec["terminationGracePeriodSeconds"] >= 300, name
        assert any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))


def test_no_other_pod_takes_a_gpu() -> None:
    for name, spec in _workloads():
        if not _is_worker(spec):
            for container in _containers(spec):
                limits = container.get("resources", {}).get("limits", {})
                assert "nvidia.com/gpu" not in limits, f"{name} holds a GPU it never uses"


def test_worker_job_runs_workers_in_parallel() -> None:
    job = _by_kind("Job")["augsearch-worker-burst"]
    assert job["spec"]["parallelism"] >= 2
    # A work queue: no completion count, the Job ends when its workers have ended.
    assert "completions" not in job["spec"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in {"OnFailure", "Never"}
    # No args: the image's CMD (`--device cuda`) puts the worker on the pod's GPU.
    assert all("args" not in c and "command" not in c for c in spec["containers"])


def test_migrate_job_upgrades_the_schema_once() -> None:
    job = _by_kind("Job")["augsearch-migrate"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["command"] == ["augsearch", "db", "upgrade"]
    assert "/api:" in spec["containers"][0]["image"], "migrations ship in the api image"


def test_referenced_secrets_config_maps_and_claims_exist() -> None:
    secrets = _by_kind("Secret")
    config_maps = _by_kind("ConfigMap")
    claims = _by_kind("PersistentVolumeClaim")
    for name, spec in _workloads():
        for container in _containers(spec):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = secrets.get(ref["name"])
                    assert secret, f"{name}: Secret {ref['name']} is not in the examples"
                    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                    assert ref["key"] in keys, f"{name}: Secret {ref['name']} lacks {ref['key']}"
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                assert ref["name"] in config_maps | secrets, f"{name}: {ref['name']} is missing"
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim:
                assert claim["claimName"] in claims, f"{name}: PVC {claim['claimName']} missing"


def test_pods_run_as_the_image_user_without_privileges() -> None:
    for name, spec in _workloads():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == IMAGE_UID, f"{name}: uid differs from the images' USER"
        for container in _containers(spec):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name


def test_api_probes_and_service_reach_the_container() -> None:
    deployment = _by_kind("Deployment")["augsearch-api"]
    template = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    paths = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ports, probe
    service = _by_kind("Service")["augsearch-api"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])


def test_selectors_match_their_pod_templates() -> None:
    for name, doc in _by_kind("Deployment").items():
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    burst = _by_kind("Job")["augsearch-worker-burst"]["spec"]["template"]["metadata"]["labels"]
    workers = _by_kind("Deployment")["augsearch-worker"]["spec"]["selector"]["matchLabels"]
    assert not workers.items() <= burst.items(), "the worker Deployment would select Job pods"


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    """The env a container of ``spec`` starts with, secrets read from the examples."""
    secrets, config_maps = _by_kind("Secret"), _by_kind("ConfigMap")
    (container,) = spec["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= config_maps[source["configMapRef"]["name"]]["data"]
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = secrets[ref["name"]]["stringData"][ref["key"]] if ref else var["value"]
    return env


def test_environment_names_are_settings_fields(settings_names: set[str]) -> None:
    for name, spec in _workloads():
        names = set(_environment(spec))
        assert all(n.startswith("AUGSEARCH_") for n in names), (name, sorted(names))
        assert names <= settings_names, f"{name}: not Settings fields {names - settings_names}"


def test_environment_builds_valid_production_settings(
    settings_names: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.settings import Settings

    for _, spec in _workloads():
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("AUGSEARCH_")]:
                patch.delenv(name)
            for name, value in _environment(spec).items():
                patch.setenv(name, value)
            settings = Settings()
            assert settings.environment == "production" and not settings.is_sqlite
            assert settings.database_url.startswith("postgresql+psycopg://")


def test_probed_paths_are_routes_of_the_app(tmp_path: Path) -> None:
    from service.app import create_app
    from service.settings import Settings

    probed = {
        container[probe]["httpGet"]["path"]
        for _, spec in _workloads()
        for container in spec["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        if probe in container
    }
    for name in ("compose.yaml", "api.Dockerfile"):
        probed |= set(re.findall(r"127\.0\.0\.1:\d+(/\w+)", (DOCKER_DIR / name).read_text()))
    assert {"/healthz", "/readyz"} <= probed
    routes = set(create_app(Settings(data_dir=tmp_path)).openapi()["paths"])
    assert probed <= routes, f"probes hit missing routes: {sorted(probed - routes)}"
