"""Applying a new configuration to running models as a diff.

:func:`plan` compares two validated :class:`Settings` and sorts every model into one of:

- ``added``: a new ``[models.<id>]`` table - managed from now on (loaded at once if ``preload``);
- ``removed``: gone from the file - new requests are refused, in-flight ones drain, the process stops;
- ``restarted``: a launch setting changed (one marked ``RESTART`` in :mod:`inference_service.config`:
  on the runtime's command line or connection - path, ctx_size, a llama.cpp model's parallel,
  GPU flags, url ...) - drained, stopped and, if it was in use, started again with the new settings;
- ``updated``: only settings marked ``LIVE`` changed (routing, queues, idle: aliases, roles,
  preload, ttl_s, queue_size, fallbacks ...) - swapped in place, the process untouched;
- anything else is unchanged and not touched.

:func:`apply` carries a plan out through the supervisor's narrow reconfiguration API
(``update_settings``, ``add_model``, ``remove_model``, ``replace_model``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from inference_service.config import ModelConfig, Settings
from inference_service.supervisor.errors import SupervisorError
from inference_service.supervisor.supervisor import Supervisor

logger = logging.getLogger(__name__)


@dataclass
class ReloadPlan:
    added: list[ModelConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[ModelConfig] = field(default_factory=list)
    updated: list[ModelConfig] = field(default_factory=list)

    def summary(self) -> dict[str, list[str]]:
        return {
            "added": [model.id for model in self.added],
            "removed": list(self.removed),
            "restarted": [model.id for model in self.restarted],
            "updated": [model.id for model in self.updated],
        }


def plan(old: Settings, new: Settings) -> ReloadPlan:
    result = ReloadPlan(removed=[model_id for model_id in old.models if model_id not in new.models])
    for model_id, model in new.models.items():
        before = old.models.get(model_id)
        if before is None:
            result.added.append(model)
        elif before.launch_settings() != model.launch_settings():
            result.restarted.append(model)
        elif before != model:
            result.updated.append(model)
    return result


def missing_model_files(settings: Settings, reload_plan: ReloadPlan) -> list[str]:
    """The llama.cpp model files a plan would start but that are not there, one line each.

    A restarted model is stopped before its new settings are tried: with its file missing, a
    working model would end up ``failed``. So such a plan is refused as a whole, the running
    config kept - as start-up refuses a preloaded model without its file. A model added
    without ``preload`` may be pulled later, as at start-up.
    """
    started = [*reload_plan.restarted, *(model for model in reload_plan.added if model.preload)]
    return [
        f"models.{model.id}.path: model file {path} not found (run `inference-service models pull {model.id}`)"
        for model in started
        if model.runtime == "llamacpp" and not (path := settings.model_path(model)).is_file()
    ]


async def apply(supervisor: Supervisor, settings: Settings, reload_plan: ReloadPlan) -> list[str]:
    """Carry out ``reload_plan``; returns one line per model whose change failed (the rest still apply)."""
    supervisor.update_settings(settings)
    for model in reload_plan.added:
        supervisor.add_model(model)
    for model in reload_plan.updated:
        await supervisor.replace_model(model, restart=False)
    steps = [
        *(supervisor.remove_model(model_id) for model_id in reload_plan.removed),
        *(supervisor.replace_model(model, restart=True) for model in reload_plan.restarted),
        *(supervisor.load(model.id) for model in reload_plan.added if model.preload),
    ]
    names = [
        *(f"remove {model_id}" for model_id in reload_plan.removed),
        *(f"restart {model.id}" for model in reload_plan.restarted),
        *(f"preload {model.id}" for model in reload_plan.added if model.preload),
    ]
    failures = []
    for name, outcome in zip(names, await asyncio.gather(*steps, return_exceptions=True), strict=True):
        if isinstance(outcome, SupervisorError):
            logger.error("config reload: %s failed: %s", name, outcome)
            failures.append(f"{name}: {outcome}")
        elif isinstance(outcome, BaseException):
            raise outcome
    return failures
