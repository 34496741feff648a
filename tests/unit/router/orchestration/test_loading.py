"""Which models an orchestrated request loads: those its mode's stages use, never the whole pool.

Real Settings, supervisor and dispatcher over models whose GGUF files do not exist: a load
attempt turns a model ``failed`` at once, so the states afterwards show which models the
mode tried to load (its stages fail, which is not what is checked here).
"""

from __future__ import annotations

import asyncio

import pytest

from inference_service.router.orchestration import _run_to_final
from inference_service.router.orchestration.runner import StageRunner
from inference_service.router.services import Services
from inference_service.router.serving.errors import APIError
from tests.unit.router.orchestration.test_plan import _plan, _services

#: "spare" chats but holds no role: no stage of critique or pipeline picks it over the others.
THREE = {"small": ["primary", "fast"], "big": ["critic", "thinker", "coder"], "spare": []}


def _states_after(mode: str) -> dict[str, str]:
    svc: Services = _services(THREE, default_model="small")
    plan = _plan(svc, orchestration_mode=mode)
    assert plan.participants == ["small", "big", "spare"]  # the whole pool takes part in the plan
    runner = StageRunner(svc.dispatcher, {}, 2, None)
    with pytest.raises(APIError):  # every stage (a non-streamed request's final one too) fails
        asyncio.run(_run_to_final(plan, runner))
    return {model_id: svc.supervisor.status(model_id).state.value for model_id in THREE}


@pytest.mark.parametrize("mode", ["critique", "pipeline"])
def test_a_sequential_mode_loads_the_models_its_stages_use_up_front_and_no_other(mode: str) -> None:
    """Both stage models are tried before the first stage (which fails), the spare never."""
    assert _states_after(mode) == {"small": "failed", "big": "failed", "spare": "unloaded"}


def test_single_loads_only_its_model() -> None:
    assert _states_after("single") == {"small": "failed", "big": "unloaded", "spare": "unloaded"}


def test_a_parallel_mode_loads_every_participant() -> None:
    assert _states_after("ensemble") == {"small": "failed", "big": "failed", "spare": "failed"}
