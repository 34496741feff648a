"""Who takes part in an orchestrated request, decided before any model is called."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference_service.config import PresetConfig
from inference_service.router.orchestration.runner import CHAT_PATH
from inference_service.router.proxy.model_support import can_chat, require
from inference_service.router.proxy.schemas import ROLE_FOR_TASK, ChatCompletionRequest, OrchestrationMode, TaskType
from inference_service.router.services import Services
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy import keys
from inference_service.supervisor import ModelState

#: Distinct models each mode needs.
MINIMUM_MODELS = {
    OrchestrationMode.SINGLE: 1,
    OrchestrationMode.CRITIQUE: 2,
    OrchestrationMode.DEBATE: 2,
    OrchestrationMode.ENSEMBLE: 2,
    OrchestrationMode.PIPELINE: 2,
}
MAX_PARALLEL_MODELS = 4


@dataclass
class Plan:
    mode: OrchestrationMode
    primary: str
    participants: list[
        str
    ]  # primary first, all distinct, all usable; the candidates, loaded only when a stage uses them
    messages: list[dict[str, Any]]
    task_type: TaskType
    rounds: int
    role_models: dict[str, list[str]] = field(default_factory=dict)
    preset_roles: dict[str, str] = field(default_factory=dict)

    def pick(self, stage_role: str, *roles: str, exclude: tuple[str, ...] = (), default: str | None = None) -> str:
        """The participant for a stage: the preset's mapping, else ``default``, else the first
        participant holding one of the roles, else any participant not excluded."""
        wanted = [self.preset_roles[stage_role]] if stage_role in self.preset_roles else []
        for role in wanted:
            for model_id in self.role_models.get(role, []):
                if model_id in self.participants and model_id not in exclude:
                    return model_id
        if default is not None and default not in exclude:
            return default
        for role in (stage_role, *roles):
            for model_id in self.role_models.get(role, []):
                if model_id in self.participants and model_id not in exclude:
                    return model_id
        return next((model_id for model_id in self.participants if model_id not in exclude), self.participants[0])


def _usable(svc: Services, model_id: str) -> bool:
    """A chat model that is loaded or loadable (anything but currently failed)."""
    return can_chat(svc, model_id) and svc.supervisor.status(model_id).state != ModelState.FAILED


def build_plan(svc: Services, chat: ChatCompletionRequest, primary: str) -> Plan:
    preset: PresetConfig | None = None
    if chat.preset is not None:
        preset = svc.settings.presets.get(chat.preset)
        if preset is None:
            known = ", ".join(svc.settings.presets) or "none configured"
            raise APIError(
                400, f"unknown preset {chat.preset!r}; available: {known}", param="preset", code="unknown_preset"
            )
    mode = chat.orchestration_mode
    if preset is not None and "orchestration_mode" not in chat.model_fields_set:
        mode = OrchestrationMode(preset.orchestration_mode)
    if chat.orchestration and chat.orchestration.models:
        pool = [svc.resolver.resolve(name) for name in chat.orchestration.models]
    elif preset is not None and preset.models:
        pool = [svc.resolver.resolve(name) for name in preset.models]
    else:
        pool = _by_task_relevance(svc, chat.task_type)
    if (
        pool
        and ((chat.orchestration and chat.orchestration.models) or preset)
        and svc.resolver.is_default_request(chat.model)
    ):
        primary = pool[0]
    if not svc.resolver.is_default_request(chat.model):
        keys.check_model(primary)  # a model the client named must be the key's and chat; drafted ones are filtered
        require(svc, primary, CHAT_PATH)
    for named in chat.orchestration.models if chat.orchestration and chat.orchestration.models else ():
        keys.check_model(svc.resolver.resolve(named))
    tenant = keys.current()
    participants = [
        model_id for model_id in dict.fromkeys([primary, *pool]) if _usable(svc, model_id) and tenant.may_use(model_id)
    ]
    needed = MINIMUM_MODELS[mode]
    if len(participants) < needed:
        available = ", ".join(participants) or "none"
        raise APIError(
            400,
            f"orchestration_mode '{mode.value}' needs at least {needed} distinct loaded or loadable models; "
            f"{len(participants)} available: {available}",
            param="orchestration_mode",
            code="not_enough_models",
        )
    if mode in (OrchestrationMode.DEBATE, OrchestrationMode.ENSEMBLE):
        participants = participants[:MAX_PARALLEL_MODELS]
    role_models: dict[str, list[str]] = {}
    for model_id, model in svc.settings.models.items():
        for role in model.roles:
            role_models.setdefault(role, []).append(model_id)
    return Plan(
        mode=mode,
        primary=participants[0],
        participants=participants,
        messages=[message.model_dump(exclude_none=True) for message in chat.messages],
        task_type=chat.task_type,
        rounds=chat.orchestration.rounds if chat.orchestration else 1,
        role_models=role_models,
        preset_roles=dict(preset.roles) if preset else {},
    )


def _by_task_relevance(svc: Services, task_type: TaskType) -> list[str]:
    """Every configured model, those with the task's role first."""
    role = ROLE_FOR_TASK[task_type]
    preferred = svc.resolver.with_role(role)
    return preferred + [m for m in svc.supervisor.model_ids if m not in preferred]
