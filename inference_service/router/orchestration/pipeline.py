"""pipeline: the fast model drafts, a coder or thinker refines, the primary validates."""

from __future__ import annotations

from inference_service.router.orchestration import prompts
from inference_service.router.orchestration.plan import Plan
from inference_service.router.orchestration.runner import FinalCall, Outcome, StageFailed, StageRunner
from inference_service.router.proxy.schemas import TaskType


async def run(plan: Plan, runner: StageRunner) -> Outcome:
    drafter = plan.pick("drafter", "fast")
    refiner_role = "coder" if plan.task_type == TaskType.CODE else "thinker"
    refiner = plan.pick("refiner", refiner_role, exclude=(drafter,))
    validator = plan.pick("validator", default=plan.primary)
    await runner.prepare([drafter, refiner, validator])
    draft = await runner.call("drafter", drafter, plan.messages)
    try:
        refined = await runner.call("refiner", refiner, prompts.refine(plan.messages, draft.text))
    except StageFailed as failure:
        return Outcome(
            final_call=FinalCall("validator", validator, prompts.validate(plan.messages, draft.text)),
            degraded_reason=f"refiner {refiner} failed: {failure.stage.error}",
        )
    return Outcome(final_call=FinalCall("validator", validator, prompts.validate(plan.messages, refined.text)))
