"""The api and worker images: what they install, who runs them, how they start."""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath

import pytest
from deployfiles import (
    DOCKER_DIR,
    GPU_STACK,
    ROOT,
    Instruction,
    copy_sources,
    dockerignore_excludes,
    env_keys,
    final_stage,
    load_dockerfile,
    parse_dockerfile,
    project_requirements,
    read_patterns,
    requirements_file,
    resolved_bases,
)
from packaging.requirements import Requirement

DOCKERFILES = ["api.Dockerfile", "worker.Dockerfile"]


def _pip_installs(run: Instruction) -> list[list[str]]:
    """Arguments of every `pip install` in a RUN (split on && and ;)."""
    commands = re.split(r"&&|;|\|\|", run.args)
    installs = []
    for command in commands:
        words = shlex.split(command)
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":
                installs.append(words[i + 2 :])
    return installs


def test_parser_joins_continuations_and_reads_both_forms() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.12-slim\n"
        "FROM ${BASE} AS build\n"
        "RUN apt-get update \\\n"
        "    # a comment inside a continuation\n"
        "    && true\n"
        "ENV A=1 B=2\n"
        "ENV LEGACY value with spaces\n"
        'ENTRYPOINT ["augsearch", "serve"]\n'
        "CMD echo hi\n"
    )
    ins = parse_dockerfile(text)
    assert [i.keyword for i in ins] == ["ARG", "FROM", "RUN", "ENV", "ENV", "ENTRYPOINT", "CMD"]
    assert ins[2].args == "apt-get update && true"
    assert ins[2].line == 4
    assert env_keys(ins) == {"A", "B", "LEGACY"}
    assert resolved_bases(ins) == ["python:3.12-slim"]
    assert ins[5].exec_form() == ["augsearch", "serve"]
    assert ins[6].exec_form() is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\nRUNN echo\n", "line 2: unknown instruction 'RUNN'"),
        ("FROM x\nRUN echo \\\n", "line 2: .*never ends"),
    ],
)
def test_parser_rejects_broken_dockerfiles(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dockerfile(text)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_starts_from_a_pinned_base(name: str) -> None:
    ins = load_dockerfile(DOCKER_DIR / name)
    first = next(i for i in ins if i.keyword != "ARG")
    assert first.keyword == "FROM", f"{name}: only ARG may come before the first FROM"
    for base in resolved_bases(ins):
        assert ":" in base and not base.endswith(":latest"), f"{name}: unpinned base {base}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_runs_as_a_numeric_non_root_user(name: str) -> None:
    users = [i.args for i in final_stage(load_dockerfile(DOCKER_DIR / name)) if i.keyword == "USER"]
    assert users, f"{name}: the final stage never switches away from root"
    user = users[-1].split(":")[0]
    # Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
    assert user.isdigit() and int(user) != 0, f"{name}: USER {users[-1]!r} is root or a name"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copies_only_paths_that_exist_and_reach_the_context(name: str) -> None:
    ins = load_dockerfile(DOCKER_DIR / name)
    ignore = DOCKER_DIR / f"{name}.dockerignore"
    patterns = read_patterns(ignore)
    assert dockerignore_excludes(patterns, ".venv"), f"{ignore.name} sends .venv to the builder"
    copies = [i for i in ins if i.keyword in {"COPY", "ADD"} and "--from=" not in i.args]
    assert copies
    for copy in copies:
        sources, _ = copy_sources(copy)
        for source in sources:
            assert (ROOT / source).exists(), f"{name} line {copy.line}: {source} is not in the repo"
            assert not dockerignore_excludes(patterns, source), (
                f"{name} line {copy.line}: {source} is excluded by {ignore.name}"
            )


def test_api_image_never_installs_the_gpu_stack() -> None:
    ins = load_dockerfile(DOCKER_DIR / "api.Dockerfile")
    copies = (copy_sources(i) for i in ins if i.keyword == "COPY" and "--from=" not in i.args)
    copied = {
        dest + Path(source).name if dest.endswith("/") else dest: source
        for sources, dest in copies
        for source in sources
    }
    installs = [args for run in ins if run.keyword == "RUN" for args in _pip_installs(run)]
    assert installs, "the api image installs nothing"
    for args in installs:
        for i, word in enumerate(args):
            if word in {"-r", "--requirement"}:
                names = set(requirements_file(ROOT / copied[args[i + 1]]))
                assert not names & GPU_STACK, f"{args[i + 1]} lists {names & GPU_STACK}"
            elif args[i - 1] in {"-r", "--requirement"}:
                continue
            elif word == "." or word.startswith(("/", "./")):
                # The project declares torch, so it must be installed without its dependencies.
                assert "--no-deps" in args, f"`pip install {' '.join(args)}` pulls in torch"
            elif not word.startswith("-"):
                assert Requirement(word).name.lower() not in GPU_STACK, f"installs {word}"


def _copy_targets(instructions: list[Instruction]) -> dict[str, PurePosixPath]:
    """Where each copied repository path lands in the image (WORKDIR applied)."""
    workdir = PurePosixPath("/")
    targets = {}
    for ins in instructions:
        if ins.keyword == "WORKDIR":
            workdir = workdir / ins.args
        elif ins.keyword == "COPY" and "--from=" not in ins.args:
            sources, dest = copy_sources(ins)
            for source in sources:
                target = workdir / dest
                targets[source] = target / source if len(sources) > 1 else target
    return targets


def test_api_image_keeps_the_migrations_where_the_cli_looks() -> None:
    from service.db.migrate import SCRIPT_LOCATION

    # The CLI finds alembic/ next to the package directories, so the image must keep that layout.
    assert SCRIPT_LOCATION == ROOT / "alembic"
    targets = _copy_targets(final_stage(load_dockerfile(DOCKER_DIR / "api.Dockerfile")))
    assert targets["alembic"].parent == targets["service"].parent, targets
    runs = [i.args for i in load_dockerfile(DOCKER_DIR / "api.Dockerfile") if i.keyword == "RUN"]
    assert any(f"--editable {targets['service'].parent}" in run for run in runs), (
        "a non-editable install moves the packages away from alembic/"
    )


def test_api_requirements_are_pyproject_without_the_gpu_stack() -> None:
    listed = requirements_file(DOCKER_DIR / "requirements-api.txt")
    expected = {n: r for n, r in project_requirements().items() if n not in GPU_STACK}
    assert set(listed) == set(expected), "requirements-api.txt and pyproject.toml disagree"
    for name, req in expected.items():
        assert listed[name].specifier == req.specifier, f"{name}: {listed[name]} != {req}"
        assert listed[name].extras == req.extras, f"{name}: extras differ"


def test_api_image_serves_on_all_interfaces_and_checks_healthz() -> None:
    stage = final_stage(load_dockerfile(DOCKER_DIR / "api.Dockerfile"))
    entrypoint = next(i for i in stage if i.keyword == "ENTRYPOINT").exec_form()
    assert entrypoint is not None, "shell-form ENTRYPOINT would not receive SIGTERM"
    assert entrypoint[:2] == ["augsearch", "serve"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"
    port = entrypoint[entrypoint.index("--port") + 1]
    assert port in next(i for i in stage if i.keyword == "EXPOSE").args.split()
    health = next(i for i in stage if i.keyword == "HEALTHCHECK").args
    assert f"127.0.0.1:{port}/healthz" in health


def test_worker_image_is_the_cuda_pytorch_build_of_the_pinned_torch() -> None:
    ins = load_dockerfile(DOCKER_DIR / "worker.Dockerfile")
    (base,) = resolved_bases(ins)
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda\d+\.\d+-cudnn9-runtime", base)
    assert match, f"worker base {base} is not a pinned CUDA runtime PyTorch image"
    (pin,) = project_requirements()["torch"].specifier
    assert pin.operator == "==" and pin.version == match[1], (
        f"base image torch {match[1]} differs from pyproject's {pin}: pip would replace it"
    )


def test_worker_image_starts_the_worker_in_exec_form() -> None:
    stage = final_stage(load_dockerfile(DOCKER_DIR / "worker.Dockerfile"))
    entrypoint = next(i for i in stage if i.keyword == "ENTRYPOINT").exec_form()
    assert entrypoint == ["augsearch", "worker"]
    # The worker's own default device is the CPU; in this image it must be the GPU it was given.
    assert next(i for i in stage if i.keyword == "CMD").exec_form() == ["--device", "cuda"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_env_settings_are_real_fields(name: str, settings_names: set[str]) -> None:
    keys = env_keys(load_dockerfile(DOCKER_DIR / name))
    ours = {k for k in keys if k.startswith("AUGSEARCH_")}
    assert ours, f"{name} sets no AUGSEARCH_ setting"
    assert ours <= settings_names, f"{name}: not Settings fields: {sorted(ours - settings_names)}"


def test_dockerfiles_found() -> None:
    assert sorted(p.name for p in Path(DOCKER_DIR).glob("*.Dockerfile")) == DOCKERFILES
