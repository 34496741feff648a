"""Orchestration modes: several models, one answer.

A mode (one module each) loads the models its stages use - only those, never the whole
pool - runs its preliminary stages and returns an :class:`Outcome`:
either the final call still to make - so it can be streamed token by token - or an
answer already in hand (a degraded result). This module turns that into an ordinary
``chat.completion`` (or chunk stream) with an ``orchestration`` object attached.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from starlette.types import Receive

from inference_service.router.observability import activity, tracing
from inference_service.router.orchestration import critique, debate, ensemble, pipeline, single
from inference_service.router.orchestration.plan import Plan, build_plan
from inference_service.router.orchestration.runner import (
    CHAT_PATH,
    FinalCall,
    Outcome,
    Stage,
    StageFailed,
    StageRunner,
    sum_usage,
)
from inference_service.router.proxy.schemas import ChatCompletionRequest, OrchestrationMode
from inference_service.router.proxy.sse import DONE, OPENAI, asking_usage, error_event, wants_usage
from inference_service.router.proxy.stream import Emit, EventStream, Headers, ProxiedStream
from inference_service.router.proxy.upstream import UpstreamUnreachable
from inference_service.router.services import Services
from inference_service.router.serving.disconnect import unless_disconnected
from inference_service.router.serving.errors import APIError, is_client_error
from inference_service.router.serving.middleware import request_id_var

ModeRunner = Callable[[Plan, StageRunner], Awaitable[Outcome]]

MODES: dict[OrchestrationMode, ModeRunner] = {
    OrchestrationMode.SINGLE: single.run,
    OrchestrationMode.CRITIQUE: critique.run,
    OrchestrationMode.DEBATE: debate.run,
    OrchestrationMode.ENSEMBLE: ensemble.run,
    OrchestrationMode.PIPELINE: pipeline.run,
}
KEEPALIVE_S = 10.0
ORCHESTRATED_ENDPOINT = "chat/completions:orchestrated"  # the metrics label


def _metadata(plan: Plan, runner: StageRunner, outcome: Outcome, degraded_reason: str | None) -> dict[str, Any]:
    succeeded = [stage for stage in runner.stages if stage.error is None]
    metadata: dict[str, Any] = {
        "mode": plan.mode.value,
        "models_used": list(dict.fromkeys(stage.model for stage in succeeded)),
        "rounds": outcome.extra.get("rounds", plan.rounds if plan.mode == OrchestrationMode.CRITIQUE else 1),
        "confidence": outcome.confidence,
        "degraded": degraded_reason is not None,
        "stages": [stage.summary() for stage in runner.stages],
    }
    if degraded_reason:
        metadata["degraded_reason"] = degraded_reason
    metadata.update({key: value for key, value in outcome.extra.items() if key != "rounds"})
    activity.note(orchestration=metadata)
    return metadata


def _fallback(runner: StageRunner, failure: APIError) -> tuple[Stage, str]:
    """The latest successful stage, used when the final stage itself fails.

    A client error (a bad parameter the runtime refused) is no failure to degrade around:
    it is raised as it is, so the client sees its own 4xx rather than a 502 to retry.
    """
    if is_client_error(failure.status):
        raise failure
    for stage in reversed(runner.stages):
        if stage.error is None:
            return stage, f"final stage failed ({failure.message}); returning the {stage.role}'s answer"
    raise APIError(502, f"orchestration failed: {failure.message}", type="upstream_error", code="orchestration_failed")


async def _run_mode(plan: Plan, runner: StageRunner) -> Outcome:
    try:
        return await MODES[plan.mode](plan, runner)
    except StageFailed as failure:  # an essential stage failed: nothing to degrade to
        raise failure.as_api_error() from None


async def orchestrate(svc: Services, chat: ChatCompletionRequest, raw: dict[str, Any], receive: Receive) -> Response:
    """Run an orchestrated chat completion; ``receive`` is watched for the client hanging up.

    A non-streamed orchestration writes nothing until every stage is done, so a client that
    leaves is noticed by watching ``receive``: the stage calls running or queued are cancelled
    (their runtimes stop generating) and no later stage starts. A stream is watched the same
    way by its :class:`EventStream` (see proxy/stream.py).
    """
    plan = build_plan(svc, chat, svc.resolver.for_task(chat.model, chat.task_type))
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    activity.note(model=plan.primary, endpoint=ORCHESTRATED_ENDPOINT, mode=plan.mode.value)
    tracing.note_request(raw)
    started = time.perf_counter()
    if chat.stream:
        source = OrchestratedStream(svc, plan, raw, chat.priority, request_id_var.get(), completion_id, created)
        return EventStream.for_model(svc, plan.primary, ORCHESTRATED_ENDPOINT, started, source)
    runner = StageRunner(svc.dispatcher, raw, chat.priority, request_id_var.get())
    try:
        outcome, final, degraded = await unless_disconnected(receive, _run_to_final(plan, runner))
    except BaseException as error:  # a client gone (ClientDisconnected) is answered by the app's handlers
        svc.metrics.record_request(plan.primary, ORCHESTRATED_ENDPOINT, started, error)
        raise
    svc.metrics.record_request(plan.primary, ORCHESTRATED_ENDPOINT, started)
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": plan.primary,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": final.text},
                    "finish_reason": final.finish_reason or "stop",
                }
            ],
            "usage": sum_usage(runner.stages),
            "orchestration": _metadata(plan, runner, outcome, degraded),
        }
    )


async def _run_to_final(plan: Plan, runner: StageRunner) -> tuple[Outcome, Stage, str | None]:
    """Every stage of a non-streamed orchestration, the final answer included; with the reason
    the result is degraded, if it is."""
    outcome = await _run_mode(plan, runner)
    degraded = outcome.degraded_reason
    final = outcome.final_stage
    if final is None:
        assert outcome.final_call is not None
        call = outcome.final_call
        try:
            final = await runner.call(call.role, call.model, call.messages)
        except StageFailed as failure:
            final, reason = _fallback(runner, failure.cause or APIError(502, str(failure.stage.error)))
            degraded = "; ".join(filter(None, [degraded, reason]))
    return outcome, final, degraded


def _chunk(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class OrchestratedStream:
    """A streamed orchestration, as the source of an :class:`EventStream`: the preliminary
    stages first (announced as SSE comments), then the final stage token by token.

    The stages run in a task of their own, so that each is announced as it finishes (and a
    keep-alive comment goes out while one runs); the stream owns that task and ``aclose``
    ends it, so a client that hangs up or stops reading stops the running stage at once and
    no later stage starts. Errors are told in-band: the headers went out before any stage ran.

    The chunk with ``finish_reason`` carries the orchestration object; usage for all stages
    follows in a choices-less chunk only with ``stream_options.include_usage``, since the
    common client loop reads ``chunk.choices[0]`` from every chunk.
    """

    protocol = OPENAI

    def __init__(
        self,
        svc: Services,
        plan: Plan,
        raw: dict[str, Any],
        priority: int,
        request_id: str | None,
        completion_id: str,
        created: int,
    ) -> None:
        self._svc = svc
        self._plan = plan
        self._raw = raw
        self._priority = priority
        self._request_id = request_id
        self._completion_id = completion_id
        self._created = created
        self._notices: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._runner = StageRunner(svc.dispatcher, raw, priority, request_id, on_stage=self._announce)
        self._stages: asyncio.Task[Outcome] | None = None

    def _announce(self, stage: Stage) -> None:
        self._notices.put_nowait(f": stage {stage.role} done ({stage.model})\n\n".encode())

    async def open(self) -> Headers:
        """Start the preliminary stages; the headers go out at once."""
        self._stages = asyncio.create_task(self._run_stages())
        return []

    async def _run_stages(self) -> Outcome:
        try:
            return await _run_mode(self._plan, self._runner)
        finally:
            self._notices.put_nowait(None)

    async def aclose(self) -> None:
        """Cancel the stages still running and wait until they let go of their models."""
        if self._stages is None:
            return
        self._stages.cancel()  # nothing if they are over
        await asyncio.wait({self._stages})
        if not self._stages.cancelled():
            self._stages.exception()  # a failure the client left before hearing of is no "never retrieved" error

    async def relay(self, emit: Emit) -> None:
        assert self._stages is not None
        while True:
            try:
                notice = await asyncio.wait_for(self._notices.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                await emit(b": keepalive\n\n")
                continue
            if notice is None:
                break
            await emit(notice)
        try:
            outcome = self._stages.result()
        except APIError as error:
            await emit(_frame(error.body()) + DONE)
            return
        await self._answer(outcome, emit)

    async def _answer(self, outcome: Outcome, emit: Emit) -> None:
        """The final stage streamed (or an answer in hand sent as one delta), then the closing chunk(s) and [DONE]."""
        degraded, final, last = outcome.degraded_reason, outcome.final_stage, None
        if final is None and outcome.final_call is not None:
            try:
                last = await self._stream_final(outcome.final_call, emit)
            except APIError as error:  # refused before its first token: fall back to an earlier answer
                try:
                    final, reason = _fallback(self._runner, error)
                except APIError as failure:  # nothing to fall back to: the headers are sent, so say it in-band
                    await emit(_frame(failure.body()) + DONE)
                    return
                degraded = "; ".join(filter(None, [degraded, reason]))
            except UpstreamUnreachable as error:
                await emit(error_event(f"the final stage failed: {error}", code="upstream_died") + DONE)
                return
        model = self._plan.primary
        if final is not None:  # an answer already in hand: send it as one delta
            delta = {"role": "assistant", "content": final.text}
            await emit(_frame(_chunk(self._completion_id, self._created, model, delta, None)))
            last = _chunk(self._completion_id, self._created, model, {}, final.finish_reason or "stop")
        if last is None:
            last = _chunk(self._completion_id, self._created, model, {}, "stop")
        last["orchestration"] = _metadata(self._plan, self._runner, outcome, degraded)
        closing = _frame(last)
        if wants_usage(self._raw):  # as OpenAI does: one more chunk, with no choices, only when asked for
            usage_chunk = {
                **_chunk(self._completion_id, self._created, model, {}, None),
                "choices": [],
                "usage": sum_usage(self._runner.stages),
            }
            closing += _frame(usage_chunk)
        await emit(closing + DONE)

    async def _stream_final(self, call: FinalCall, emit: Emit) -> dict[str, Any] | None:
        """Stream the final call's chunks as ours, all but its last, which is returned (the
        orchestration object goes on it). APIError if it is refused before its first token.

        The call is a proxied stream like a client's, so a runtime that dies mid-answer is
        continued (proxy/resume/); one that cannot be raises UpstreamUnreachable.
        """
        started = time.time()
        stage = Stage(call.role, call.model, started, started)
        body = asking_usage({**self._runner.body(call.messages), "stream": True})
        span = self._runner.stage_span(call.role, call.model)  # ends with the relay; current only while opening
        dispatcher = self._svc.dispatcher
        stream = ProxiedStream(dispatcher, call.model, CHAT_PATH, body, self._priority, self._request_id, OPENAI)
        try:
            with span.current():
                await stream.open()
        except BaseException as error:  # refused, or cancelled while it waited (the client left): the span ends
            span.end()
            if isinstance(error, APIError):
                stage.error, stage.finished_at = error.message, time.time()
                self._runner.record(stage)
            raise
        last: dict[str, Any] | None = None

        async def take(run: bytes) -> None:
            nonlocal last
            for event in run.split(b"\n\n"):
                if not event.startswith(b"data: {"):
                    continue
                chunk = json.loads(event[6:])
                if isinstance(error := chunk.get("error"), dict):  # the stream's own ending: broken, not resumed
                    raise UpstreamUnreachable(str(error.get("message")))
                usage = chunk.pop("usage", None)
                if isinstance(usage, dict):  # the stage's own usage: reported in the total only
                    stage.usage = {
                        k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                    }
                if not chunk.get("choices"):
                    continue
                for choice in chunk["choices"]:
                    stage.text += (choice.get("delta") or {}).get("content") or ""
                    stage.finish_reason = choice.get("finish_reason") or stage.finish_reason
                if last is not None:
                    await emit(_frame(last))
                last = {**chunk, "id": self._completion_id, "created": self._created, "model": self._plan.primary}

        try:
            await stream.relay(take)
        except UpstreamUnreachable as error:  # told in-band by the caller
            span.record(error)
            raise
        finally:
            await stream.aclose()
            span.end()
        stage.finished_at = time.time()
        self._runner.record(stage)
        return last
