"""Readers for the deployment files: Dockerfiles, .dockerignore, compose interpolation, manifests.

No Docker engine runs where the tests do, so these small parsers turn the files into data that
the tests can hold to real properties (what is installed, who runs, what starts after what).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
K8S_DIR = ROOT / "deploy" / "kubernetes"

INSTRUCTIONS = frozenset(
    [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
)
# Interpolation values used to read the compose file the way `docker compose` would.
COMPOSE_ENV = {"POSTGRES_PASSWORD": "compose-test-password"}
# Packages of the training stack, which make an image a GPU image; the API image must carry
# none of them: torch and what builds on it (timm models, albumentations, kornia) and the
# compression tools only workers run (onnx export, onnxruntime checks and quantization).
GPU_STACK = frozenset(
    {
        "torch", "torchvision", "torchaudio", "albumentations", "kornia", "triton", "timm",
        "onnx", "onnxruntime", "onnxscript",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction after line continuations are joined."""

    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON-array (exec) form of the arguments, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"line {self.line}: exec form must be a JSON list of strings")
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions.

    Args:
        text: The Dockerfile's content (heredocs are not supported).

    Returns:
        The instructions in order, comments and blank lines dropped.

    Raises:
        ValueError: On an unknown instruction or a continuation that never ends.
    """
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        # Docker drops comment lines even in the middle of a continued instruction.
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if continued:
            continue
        keyword, _, args = " ".join(parts).partition(" ")
        if keyword.upper() not in INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown instruction {keyword!r}")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        parts = []
    if parts:
        raise ValueError(f"line {start}: the instruction's line continuation never ends")
    return instructions


def load_dockerfile(path: Path) -> list[Instruction]:
    """Parse the Dockerfile at ``path``."""
    return parse_dockerfile(path.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the last build stage (from its FROM on)."""
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    if not starts:
        raise ValueError("the Dockerfile has no FROM instruction")
    return instructions[starts[-1] :]


def resolved_bases(instructions: list[Instruction]) -> list[str]:
    """The image of every FROM, with the defaults of global ARGs substituted."""
    defaults: dict[str, str] = {}
    bases: list[str] = []
    for ins in instructions:
        if ins.keyword == "ARG" and not bases:
            name, _, value = ins.args.partition("=")
            defaults[name.strip()] = value.strip()
        elif ins.keyword == "FROM":
            image = ins.args.split()[0]
            bases.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m[1] or m[2]], image))
    return bases


def env_keys(instructions: list[Instruction]) -> set[str]:
    """Names set by ENV instructions (``KEY=value`` pairs or the legacy ``KEY value`` form)."""
    keys: set[str] = set()
    for ins in instructions:
        if ins.keyword != "ENV":
            continue
        tokens = shlex.split(ins.args)
        if "=" not in tokens[0]:
            keys.add(tokens[0])
        else:
            keys.update(token.partition("=")[0] for token in tokens)
    return keys


def copy_sources(ins: Instruction) -> tuple[list[str], str]:
    """Sources and destination of a COPY/ADD (flags dropped)."""
    words = ins.exec_form() or shlex.split(ins.args)
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], paths[-1]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether a context path is left out by .dockerignore patterns (last match wins)."""
    candidates = [path] + ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/").replace("**/", "*")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            excluded = not negated
    return excluded


def read_patterns(path: Path) -> list[str]:
    """Non-comment lines of an ignore file."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


_VAR = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute compose variables: ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR:?err}``, ``$$``.

    Raises:
        ValueError: When a required variable (``:?`` / ``?``) has no value.
    """

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and missing:
            raise ValueError(f"required variable {name} is missing: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return value or ""

    return _VAR.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a parsed YAML tree."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def compose_variables(text: str) -> set[str]:
    """Names of the variables a compose file interpolates."""
    return {m["name"] or m["bare"] for m in _VAR.finditer(text) if m[0] != "$$"}


def env_file_keys(path: Path) -> set[str]:
    """Keys assigned in a ``KEY=value`` env file."""
    return {line.partition("=")[0].strip() for line in read_patterns(path)}


def environment_names(environment: dict[str, Any] | list[str] | None) -> set[str]:
    """Variable names of a compose ``environment`` (mapping or ``KEY=value`` list)."""
    if environment is None:
        return set()
    if isinstance(environment, dict):
        return set(environment)
    return {item.partition("=")[0] for item in environment}


def load_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every YAML document under deploy/kubernetes with the file it came from."""
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload manifest, or None for other kinds."""
    kind = doc["kind"]
    if kind == "Pod":
        return doc["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in {"Deployment", "Job", "StatefulSet", "DaemonSet", "ReplicaSet"}:
        return doc["spec"]["template"]["spec"]
    return None


def project_requirements() -> dict[str, Requirement]:
    """pyproject.toml's runtime dependencies keyed by name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = (Requirement(line) for line in project["dependencies"])
    return {req.name.lower(): req for req in reqs}


def requirements_file(path: Path) -> dict[str, Requirement]:
    """A pip requirements file keyed by name."""
    reqs = (Requirement(line) for line in read_patterns(path))
    return {req.name.lower(): req for req in reqs}


def settings_env_names() -> set[str] | None:
    """Environment names of the service's Settings fields, or None if settings.py is absent."""
    try:
        module = importlib.import_module("service.settings")
    except ModuleNotFoundError as exc:
        if exc.name in {"service", "service.settings"}:
            return None
        raise
    settings = module.Settings
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}
