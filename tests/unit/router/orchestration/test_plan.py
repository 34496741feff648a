"""Participant planning: who takes part in an orchestrated request and which model plays each stage.

Built from real Settings, resolver and supervisor objects; nothing is started or called.
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

import pytest

from inference_service.config import Settings
from inference_service.router.database import Database
from inference_service.router.observability.metrics import Metrics
from inference_service.router.orchestration.plan import MAX_PARALLEL_MODELS, Plan, build_plan
from inference_service.router.proxy.dispatch import Dispatcher
from inference_service.router.proxy.resolution import ModelResolver
from inference_service.router.proxy.schemas import ChatCompletionRequest, OrchestrationMode, TaskType
from inference_service.router.proxy.upstream import UpstreamClient
from inference_service.router.services import Services
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.keys import Tenant
from inference_service.router.tenancy.ledger import UsageLedger
from inference_service.router.tenancy.registry import Tenancy
from inference_service.runtimes.factory import runtime_factory
from inference_service.supervisor import Supervisor

MESSAGES = [{"role": "user", "content": "hi"}]


def _services(models: dict[str, list[str]], **settings: Any) -> Services:
    """Services for models given as ``id -> roles`` (GGUF paths need not exist: nothing loads)."""
    config = Settings(
        models={
            model_id: {"path": f"/nonexistent/{model_id}.gguf", "roles": roles} for model_id, roles in models.items()
        },
        **settings,
    )
    supervisor = Supervisor(config, runtime_factory(config, Path("/nonexistent/llama-server")))
    metrics = Metrics()
    dispatcher = Dispatcher(config, supervisor, UpstreamClient(), metrics)
    ledger = UsageLedger(Database(Path("/nonexistent/usage.db")), metrics)  # nothing is called: never opened
    return Services(config, supervisor, dispatcher, ModelResolver(config), metrics, Tenancy(config, ledger))


def _plan(svc: Services, **request: Any) -> Plan:
    chat = ChatCompletionRequest.model_validate({"messages": MESSAGES, **request})
    return build_plan(svc, chat, svc.resolver.for_task(chat.model, chat.task_type))


TWO = {"small": ["primary", "fast"], "big": ["critic", "thinker", "coder"]}


def test_participants_are_distinct_with_the_primary_first() -> None:
    plan = _plan(_services(TWO, default_model="small"), orchestration_mode="critique")
    assert plan.participants == ["small", "big"]
    assert plan.primary == "small"


def test_too_few_models_is_400_naming_the_need_and_the_available() -> None:
    with pytest.raises(APIError) as caught:
        _plan(_services({"small": ["primary"]}), orchestration_mode="debate")
    assert caught.value.status == 400
    assert "at least 2" in caught.value.message and "1 available: small" in caught.value.message


def test_single_mode_needs_one_model() -> None:
    assert _plan(_services({"small": ["primary"]}), orchestration_mode="single").participants == ["small"]


def test_parallel_modes_are_capped() -> None:
    many = {f"m{i}": ["primary"] for i in range(MAX_PARALLEL_MODELS + 2)}
    assert len(_plan(_services(many), orchestration_mode="ensemble").participants) == MAX_PARALLEL_MODELS


def test_task_type_puts_the_models_with_its_role_first_when_no_model_was_chosen() -> None:
    plan = _plan(_services(TWO, default_model="small"), orchestration_mode="critique", task_type="code")
    assert plan.primary == "big"


def test_an_explicit_non_default_model_stays_primary_whatever_the_task_type() -> None:
    plan = _plan(_services(TWO, default_model="small"), orchestration_mode="critique", task_type="simple", model="big")
    assert plan.primary == "big"


def test_orchestration_models_limit_the_participants() -> None:
    svc = _services({**TWO, "third": ["fast"]})
    plan = _plan(svc, orchestration_mode="debate", orchestration={"models": ["big", "third"]})
    assert plan.participants == ["big", "third"]


def test_preset_supplies_mode_models_and_stage_roles() -> None:
    presets = {
        "review": {"orchestration_mode": "critique", "models": ["big", "small"], "roles": {"generator": "coder"}}
    }
    plan = _plan(_services(TWO, presets=presets), preset="review")
    assert (plan.mode, plan.primary, plan.pick("generator", default=plan.primary)) == (
        OrchestrationMode.CRITIQUE,
        "big",
        "big",
    )


def test_unknown_preset_is_400_listing_the_known_ones() -> None:
    presets = {"review": {"orchestration_mode": "critique", "models": ["big", "small"]}}
    with pytest.raises(APIError) as caught:
        _plan(_services(TWO, presets=presets), preset="nope")
    assert caught.value.status == 400 and "review" in caught.value.message


def _bare_plan(
    participants: list[str], role_models: dict[str, list[str]], preset_roles: dict[str, str] | None = None
) -> Plan:
    return Plan(
        OrchestrationMode.CRITIQUE,
        participants[0],
        participants,
        MESSAGES,
        TaskType.GENERAL,
        1,
        role_models,
        preset_roles or {},
    )


def test_pick_prefers_the_presets_role_mapping_over_the_default() -> None:
    plan = _bare_plan(["a", "b"], {"primary": ["a"], "coder": ["b"]}, {"generator": "coder"})
    assert plan.pick("generator", default="a") == "b"


def test_pick_uses_the_default_when_no_preset_maps_the_stage() -> None:
    assert _bare_plan(["a", "b"], {"coder": ["b"]}).pick("generator", default="a") == "a"


def test_pick_finds_a_participant_holding_one_of_the_roles() -> None:
    assert _bare_plan(["a", "b", "c"], {"thinker": ["c"]}).pick("critic", "thinker") == "c"


def test_pick_never_returns_an_excluded_model_while_another_participant_exists() -> None:
    plan = _bare_plan(["a", "b"], {"critic": ["a"]})
    assert plan.pick("critic", exclude=("a",)) == "b"


def test_pick_ignores_role_holders_that_are_not_participants() -> None:
    assert _bare_plan(["a", "b"], {"critic": ["z", "b"]}).pick("critic", exclude=("a",)) == "b"


THREE_CHAT = {**TWO, "third": ["fast"]}


def _as_key(models: list[str]) -> contextvars.Token[Tenant]:
    """Act as a key limited to ``models`` (until the returned token is released)."""
    return keys.act_as(Tenant("batch", frozenset({"inference"}), models=frozenset(models)))


def test_a_key_drafts_only_the_models_it_may_use() -> None:
    svc = _services(THREE_CHAT, default_model="small")
    token = _as_key(["small", "third"])
    try:
        plan = _plan(svc, orchestration_mode="debate")
    finally:
        keys.release(token)
    assert plan.participants == ["small", "third"]


@pytest.mark.parametrize(
    "request_fields",
    [{"model": "big"}, {"orchestration": {"models": ["small", "big"]}}],
    ids=["model", "orchestration.models"],
)
def test_a_model_the_client_names_outside_its_keys_models_is_403(request_fields: dict[str, Any]) -> None:
    svc = _services(THREE_CHAT, default_model="small")
    token = _as_key(["small", "third"])
    try:
        with pytest.raises(APIError) as refused:
            _plan(svc, orchestration_mode="debate", **request_fields)
    finally:
        keys.release(token)
    assert (refused.value.status, refused.value.code) == (403, "permission_denied") and "'big'" in refused.value.message
