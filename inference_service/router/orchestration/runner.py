"""The shared machinery of every mode: calling a model for one stage, and the stage record.

A stage is one chat call to one model through the ordinary :class:`Dispatcher`, so
orchestration traffic is admitted, queued and counted like any client request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference_service.router.observability import tracing
from inference_service.router.proxy.dispatch import Dispatcher
from inference_service.router.serving.errors import APIError

CHAT_PATH = "/v1/chat/completions"
# Per-request sampling knobs the client set that every stage should honour.
_SHARED_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
)


@dataclass
class Stage:
    """What happened in one stage; serialised into ``orchestration.stages``."""

    role: str
    model: str
    started_at: float
    finished_at: float
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "role": self.role,
            "model": self.model,
            "usage": self.usage,
            "latency_ms": round((self.finished_at - self.started_at) * 1000),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.error:
            summary["error"] = self.error
        return summary


class StageFailed(Exception):
    def __init__(self, stage: Stage, cause: APIError | None = None) -> None:
        super().__init__(stage.error)
        self.stage = stage
        self.cause = cause

    def as_api_error(self) -> APIError:
        """For a stage the mode cannot do without: the client sees the stage's own error."""
        status = self.cause.status if self.cause else 502
        error_type = self.cause.type if self.cause else "upstream_error"
        return APIError(
            status, f"{self.stage.role} stage on {self.stage.model} failed: {self.stage.error}", type=error_type
        )


StageListener = Callable[[Stage], None]


class StageRunner:
    """Runs stages for one orchestrated request and remembers them in order of completion."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        raw_request: dict[str, Any],
        priority: int,
        request_id: str | None,
        on_stage: StageListener | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._params = {key: raw_request[key] for key in _SHARED_FIELDS if key in raw_request}
        self._priority = priority
        self._request_id = request_id
        self._on_stage = on_stage
        self.stages: list[Stage] = []
        self._calls: Counter[tuple[str, str]] = Counter()

    async def prepare(self, model_ids: list[str]) -> None:
        """Load the models the mode's stages will use, together when they fit together (before
        its first stage). Only those: a model no stage calls is never loaded for the request."""
        supervisor = self._dispatcher.supervisor
        with tracing.model_loads(supervisor, model_ids):
            await supervisor.prepare(model_ids)

    def stage_span(self, role: str, model_id: str) -> tracing.SpanHandle:
        """The trace span of a stage about to run; its round is how many times this role has now
        run on this model in the request (critique: the critic's 1st, 2nd, ... review)."""
        self._calls[role, model_id] += 1
        return tracing.stage(role, model_id, self._calls[role, model_id])

    def body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self._params, "messages": messages}

    def record(self, stage: Stage) -> None:
        self.stages.append(stage)
        if self._on_stage:
            self._on_stage(stage)

    async def call(self, role: str, model_id: str, messages: list[dict[str, Any]]) -> Stage:
        """One non-streaming stage; a failure is recorded and raised as StageFailed."""
        started = time.time()
        try:
            with self.stage_span(role, model_id):
                reply = await self._dispatcher.complete(
                    model_id, CHAT_PATH, self.body(messages), self._priority, self._request_id
                )
            choice = reply["choices"][0]
            stage = Stage(
                role,
                model_id,
                started,
                time.time(),
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason"),
                usage=_usage(reply.get("usage")),
            )
        except (APIError, KeyError, IndexError, TypeError) as error:
            message = error.message if isinstance(error, APIError) else f"malformed reply: {error!r}"
            stage = Stage(role, model_id, started, time.time(), error=message)
            self.record(stage)
            raise StageFailed(stage, error if isinstance(error, APIError) else None) from None
        self.record(stage)
        return stage

    async def call_parallel(self, calls: list[tuple[str, str, list[dict[str, Any]]]]) -> list[Stage | StageFailed]:
        """Run stages concurrently; each result is its Stage or the StageFailed it raised."""
        results = await asyncio.gather(*(self.call(*call) for call in calls), return_exceptions=True)
        stages: list[Stage | StageFailed] = []
        for result in results:
            if not isinstance(result, (Stage, StageFailed)):
                raise result
            stages.append(result)
        return stages


def _usage(usage: object) -> dict[str, int]:
    if not isinstance(usage, dict):
        return {}
    return {key: int(usage.get(key) or 0) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}


def sum_usage(stages: list[Stage]) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for stage in stages:
        for key in total:
            total[key] += stage.usage.get(key, 0)
    return total


@dataclass
class FinalCall:
    """The last stage, left for the caller to run so it can be streamed token by token."""

    role: str
    model: str
    messages: list[dict[str, Any]]


@dataclass
class Outcome:
    """What a mode decided: either a final call still to make, or an answer already in hand."""

    final_call: FinalCall | None = None
    final_stage: Stage | None = None
    confidence: float | None = None
    degraded_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
