"""critique: the generator answers, a different model critiques, the generator revises.

``rounds`` repeats critique + revise. If a critic fails, the best answer so far is
returned with ``degraded`` set instead of failing the request.
"""

from __future__ import annotations

from inference_service.router.orchestration import prompts
from inference_service.router.orchestration.plan import Plan
from inference_service.router.orchestration.runner import FinalCall, Outcome, StageFailed, StageRunner


async def run(plan: Plan, runner: StageRunner) -> Outcome:
    generator = plan.pick("generator", default=plan.primary)
    critic = plan.pick("critic", "thinker", exclude=(generator,))
    await runner.prepare([generator, critic])
    answer = await runner.call("generator", generator, plan.messages)
    for round_number in range(1, plan.rounds + 1):
        try:
            review = await runner.call("critic", critic, prompts.critique(plan.messages, answer.text))
        except StageFailed as failure:
            return Outcome(
                final_stage=answer,
                degraded_reason=f"critic {critic} failed: {failure.stage.error}",
                extra={"rounds": round_number - 1},
            )
        revision = prompts.revise(plan.messages, answer.text, review.text)
        if round_number == plan.rounds:
            return Outcome(final_call=FinalCall("reviser", generator, revision), extra={"rounds": plan.rounds})
        answer = await runner.call("reviser", generator, revision)
    raise AssertionError("unreachable: rounds >= 1")
