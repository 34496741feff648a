"""debate: two or more models answer in parallel; the primary reconciles them into one."""

from __future__ import annotations

from inference_service.router.orchestration import prompts
from inference_service.router.orchestration.agreement import agreement
from inference_service.router.orchestration.parallel import answer_in_parallel
from inference_service.router.orchestration.plan import Plan
from inference_service.router.orchestration.runner import FinalCall, Outcome, StageRunner

TASK = "Weigh these answers, resolve their disagreements, and give the single best answer."


async def run(plan: Plan, runner: StageRunner) -> Outcome:
    answers, degraded = await answer_in_parallel(plan, runner, role="debater")
    if len(answers) == 1:
        return Outcome(final_stage=answers[0], confidence=None, degraded_reason=degraded)
    return Outcome(
        final_call=FinalCall(
            "reconciler", plan.primary, prompts.reconcile(plan.messages, [(s.model, s.text) for s in answers], TASK)
        ),
        confidence=agreement([stage.text for stage in answers]),
        degraded_reason=degraded,
    )
