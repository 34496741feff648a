"""ensemble: every participant answers in parallel; the primary writes the consensus."""

from __future__ import annotations

from inference_service.router.orchestration import prompts
from inference_service.router.orchestration.agreement import agreement
from inference_service.router.orchestration.parallel import answer_in_parallel
from inference_service.router.orchestration.plan import Plan
from inference_service.router.orchestration.runner import FinalCall, Outcome, StageRunner

TASK = "Write the consensus answer: keep what the answers agree on, drop what only one of them claims."


async def run(plan: Plan, runner: StageRunner) -> Outcome:
    answers, degraded = await answer_in_parallel(plan, runner, role="member")
    lengths = {stage.model: len(stage.text) for stage in answers}
    if len(answers) == 1:
        return Outcome(final_stage=answers[0], degraded_reason=degraded, extra={"answer_lengths": lengths})
    return Outcome(
        final_call=FinalCall(
            "synthesizer", plan.primary, prompts.reconcile(plan.messages, [(s.model, s.text) for s in answers], TASK)
        ),
        confidence=agreement([stage.text for stage in answers]),
        degraded_reason=degraded,
        extra={"answer_lengths": lengths},
    )
