"""The vocabulary every config table uses: paths, value types, the one-line ConfigError, and the
reload class each field declares (LIVE, RESTART, STARTUP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = REPO_ROOT / "config.toml"
CACHE_DIR = Path(os.environ.get("INFERENCE_CACHE_DIR", Path.home() / ".cache" / "inference-service"))

RuntimeKind = Literal["llamacpp", "ollama", "remote"]
PoolingType = Literal["none", "mean", "cls", "last", "rank"]
Capability = Literal["chat", "completion", "embeddings", "rerank"]
#: How a request picks one of a model's replicas (see supervisor/routing.py).
ReplicaRouting = Literal["affinity", "least_loaded", "round_robin"]
MAX_LLAMACPP_SLOTS = 256
Role = str


class ConfigError(Exception):
    """A configuration problem, described in one line that names the offending key."""


@dataclass(frozen=True)
class OnReload:
    """What a config reload does with a changed field. Every field of :class:`Settings` and
    :class:`ModelConfig` carries one (``Annotated[type, LIVE]``): the reload, its plan for the
    models and the README all follow it, so a new field cannot be forgotten in a hand list."""

    effect: Literal["live", "restart", "startup"]
    #: ``restart`` only for models of these runtimes (the field is on their command line); live for the rest.
    runtimes: frozenset[RuntimeKind] | None = None

    def restarts(self, runtime: RuntimeKind) -> bool:
        return self.effect == "restart" and (self.runtimes is None or runtime in self.runtimes)


#: Applied at once by a config reload.
LIVE = OnReload("live")
#: A model's launch setting (its runtime's command line or connection): a reload restarts the model.
RESTART = OnReload("restart")
#: Read once at start-up: a reload that changes it says so in its answer's ``restart_required``.
STARTUP = OnReload("startup")


def on_reload(model: type[BaseModel], name: str) -> OnReload:
    """What a reload does with ``model``'s field ``name``."""
    marks = [mark for mark in model.model_fields[name].metadata if isinstance(mark, OnReload)]
    if len(marks) != 1:
        raise TypeError(f"{model.__name__}.{name} needs one reload class: Annotated[..., LIVE | RESTART | STARTUP]")
    return marks[0]


class StrictTable(BaseModel):
    """A config table that refuses unknown keys: a typo is an error, not a silently ignored line."""

    model_config = ConfigDict(extra="forbid")
