"""The parallel fan-out of debate and ensemble when every stage fails.

Real Settings, supervisor and dispatcher over models whose GGUF files do not exist: each
stage fails the way a runtime that cannot start fails, before any process is spawned.
"""

from __future__ import annotations

import asyncio

import pytest

from inference_service.router.orchestration.parallel import answer_in_parallel
from inference_service.router.orchestration.runner import StageRunner
from inference_service.router.serving.errors import APIError
from tests.unit.router.orchestration.test_plan import TWO, _plan, _services


def test_every_model_failing_upstream_is_a_502_naming_each_failure() -> None:
    svc = _services(TWO, default_model="small")
    plan = _plan(svc, orchestration_mode="ensemble")
    runner = StageRunner(svc.dispatcher, {"messages": [], "top_p": 0.5}, 2, None)

    with pytest.raises(APIError) as caught:
        asyncio.run(answer_in_parallel(plan, runner, role="member"))

    assert (caught.value.status, caught.value.code) == (502, "all_stages_failed")
    assert "small" in caught.value.message and "big" in caught.value.message
