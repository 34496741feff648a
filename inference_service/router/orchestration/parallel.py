"""The fan-out shared by debate and ensemble."""

from __future__ import annotations

from inference_service.router.orchestration.plan import Plan
from inference_service.router.orchestration.runner import Stage, StageFailed, StageRunner
from inference_service.router.serving.errors import APIError, is_client_error


async def answer_in_parallel(plan: Plan, runner: StageRunner, role: str) -> tuple[list[Stage], str | None]:
    """Every participant answers concurrently. Failures degrade; only all failing is an error.

    When all fail, a stage refused for the client's request (a 4xx such as a bad ``top_p``,
    which every stage shares) is answered as that 4xx: a 502 would blame the upstreams and
    invite a retry that cannot succeed. Only upstream failures alone make the 502.
    """
    await runner.prepare(plan.participants)  # the primary, which combines the answers, is one of them
    results = await runner.call_parallel([(role, model_id, plan.messages) for model_id in plan.participants])
    answers = [result for result in results if isinstance(result, Stage)]
    failures = [result for result in results if isinstance(result, StageFailed)]
    if not answers:
        for failure in failures:
            if failure.cause is not None and is_client_error(failure.cause.status):
                raise failure.as_api_error()
        reasons = "; ".join(f"{failure.stage.model}: {failure.stage.error}" for failure in failures)
        raise APIError(502, f"every model failed: {reasons}", type="upstream_error", code="all_stages_failed")
    degraded = "; ".join(f"{failure.stage.model} failed: {failure.stage.error}" for failure in failures) or None
    return answers, degraded
