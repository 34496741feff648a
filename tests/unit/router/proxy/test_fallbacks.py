"""Dispatcher fallbacks, with fake runtimes and a recording upstream: who is tried, when, and who answers.

The integration suite proves the same against real llama-servers
(tests/integration/supervisor/test_fallbacks.py); here the refusals are set up exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import generate_latest

from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.dispatch import Dispatcher, served_model_var
from inference_service.router.proxy.upstream import UpstreamReply
from inference_service.router.serving.errors import APIError
from inference_service.runtimes.base import Endpoint
from tests.unit.router.conftest import MakeHarness
from tests.unit.supervisor.fakes import Harness

pytestmark = pytest.mark.timeout(30)
CHAT = "/v1/chat/completions"


class RecordingUpstream:
    """Answers 200 (or ``status``) and remembers which endpoint each request went to."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[str] = []

    async def post(
        self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None = None
    ) -> UpstreamReply:
        self.calls.append(endpoint.model_name)
        return UpstreamReply(self.status, b'{"model": "%s"}' % endpoint.model_name.encode(), "application/json")


def dispatcher(harness: Harness, upstream: RecordingUpstream) -> tuple[Dispatcher, Metrics]:
    metrics = Metrics()
    return Dispatcher(harness.settings, harness.supervisor, upstream, metrics), metrics  # type: ignore[arg-type]


def with_fallbacks(harness: Harness, **fallbacks: list[str]) -> Harness:
    for model_id, chain in fallbacks.items():
        harness.settings.models[model_id].fallbacks = chain
    return harness


async def test_a_failed_model_is_served_by_its_first_fallback_that_can(harnesses: MakeHarness) -> None:
    harness = with_fallbacks(harnesses(["a", "b", "c"]), a=["b", "c"])
    harness.runtimes["a"].healthy = harness.runtimes["b"].healthy = False  # both fail to start
    upstream = RecordingUpstream()
    dispatch, metrics = dispatcher(harness, upstream)

    reply = await dispatch.post("a", CHAT, {"messages": []})

    assert (reply.status, upstream.calls, served_model_var.get()) == (200, ["c"], "c")
    assert (
        'inference_fallbacks_total{fallback="c",model="a",reason="model_unavailable"} 1.0'
        in generate_latest(metrics.registry).decode()
    )


async def test_a_full_queue_falls_back(harnesses: MakeHarness) -> None:
    harness = with_fallbacks(harnesses(["a", "b"]), a=["b"])
    harness.settings.models["a"].queue_size = 0
    harness.settings.models["a"].parallel = 1  # a remote model has no router-side cap unless parallel is set
    upstream = RecordingUpstream()
    dispatch, _ = dispatcher(harness, upstream)
    async with harness.supervisor.lease("a"), dispatch.queues["a"].slot():  # a's only slot is taken
        reply = await dispatch.post("a", CHAT, {})

    assert (reply.status, upstream.calls) == (200, ["b"])


async def test_an_upstream_client_error_is_returned_not_retried_elsewhere(harnesses: MakeHarness) -> None:
    harness = with_fallbacks(harnesses(["a", "b"]), a=["b"])
    upstream = RecordingUpstream(status=400)
    dispatch, _ = dispatcher(harness, upstream)

    reply = await dispatch.post("a", CHAT, {})

    assert (reply.status, upstream.calls) == (400, ["a"])


async def test_when_every_fallback_refuses_the_models_own_refusal_is_the_answer(harnesses: MakeHarness) -> None:
    harness = with_fallbacks(harnesses(["a", "b"]), a=["b"])
    for runtime in harness.runtimes.values():
        runtime.healthy = False
    dispatch, _ = dispatcher(harness, RecordingUpstream())

    with pytest.raises(APIError) as refused:
        await dispatch.post("a", CHAT, {})

    assert refused.value.status == 503 and "'a'" in refused.value.message
