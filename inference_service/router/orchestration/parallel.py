"""The fan-out shared by debate and ensemble."""

from __future__ import annotations

from inference_service.router.errors import APIError
from inference_service.router.orchestration.plan import Plan
from inference_service.router.orchestration.runner import Stage, StageFailed, StageRunner


async def answer_in_parallel(plan: Plan, runner: StageRunner, role: str) -> tuple[list[Stage], str | None]:
    """Every participant answers concurrently. Failures degrade; only all failing is an error."""
    results = await runner.call_parallel([(role, model_id, plan.messages) for model_id in plan.participants])
    answers = [result for result in results if isinstance(result, Stage)]
    failures = [result.stage for result in results if isinstance(result, StageFailed)]
    if not answers:
        reasons = "; ".join(f"{stage.model}: {stage.error}" for stage in failures)
        raise APIError(502, f"every model failed: {reasons}", type="upstream_error", code="all_stages_failed")
    degraded = "; ".join(f"{stage.model} failed: {stage.error}" for stage in failures) or None
    return answers, degraded
