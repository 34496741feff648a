"""single: one call, one model - the ordinary request with orchestration metadata.

Nothing to prepare: the one call loads its model, and no other model is touched."""

from __future__ import annotations

from inference_service.router.orchestration.plan import Plan
from inference_service.router.orchestration.runner import FinalCall, Outcome, StageRunner


async def run(plan: Plan, runner: StageRunner) -> Outcome:
    return Outcome(final_call=FinalCall("generator", plan.primary, plan.messages))
