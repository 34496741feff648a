"""Shared fixtures for the end-to-end suite (test_e2e/streaming/orchestration/gateway/load).

These tests talk to an inference-service that is ALREADY running (``INFERENCE_SERVICE_URL``)
and, for the gateway tests, to a LiteLLM proxy (``LLM_GATEWAY_URL``); ``python -m tests.stack``
(``make test``) starts both. Nothing here is autouse: the tests in the subfolders
(supervisor/, router/, runtimes/) start routers of their own and never touch these fixtures.

When the service or gateway is missing, the ``skip_if_*`` fixtures skip with the messages the
README's troubleshooting section quotes - except in CI (``CI=true``) or with
``INTEGRATION_REQUIRED=1``, where a skip would hide a broken stack, so they fail instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.suite_policy import skips_are_failures

SERVICE_URL = os.environ.get("INFERENCE_SERVICE_URL", "http://localhost:8085").rstrip("/")
GATEWAY_URL = os.environ.get("LLM_GATEWAY_URL", "http://localhost:8080").rstrip("/")
REQUEST_TIMEOUT_S = float(os.environ.get("INTEGRATION_TEST_TIMEOUT", "120.0"))
STREAM_TIMEOUT_S = float(os.environ.get("STREAM_TEST_TIMEOUT", "180.0"))
# The LiteLLM proxy refuses to start without a master key; tests/stack.py starts it with this one.
GATEWAY_MASTER_KEY = os.environ.get("LITELLM_MASTER_KEY", "sk-inference-service-integration")

#: The model ids the suite uses (served by tests/integration/config.toml as aliases of tiny models).
FAST_MODEL = "llama-3.2-3b"
ORCHESTRATION_MODEL = "phi-4"
MULTI_MODEL = "deepseek-r1-7b"

PROBE_TIMEOUT_S = 5.0
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _unavailable(message: str) -> None:
    if skips_are_failures():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _answers(url: str, ok: tuple[int, ...] = (200,)) -> bool:
    try:
        return httpx.get(url, timeout=PROBE_TIMEOUT_S).status_code in ok
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- skip conditions


@pytest.fixture
def skip_if_service_unavailable() -> None:
    """Skip (fail in CI) unless the service answers ``/health``."""
    if not _answers(f"{SERVICE_URL}/health"):
        _unavailable(f"Inference service not available at {SERVICE_URL}")


@pytest.fixture
def skip_if_no_models(skip_if_service_unavailable: None) -> None:
    """Skip (fail in CI) unless the service has a loaded model: ``/health/ready`` is 200 only then."""
    if not _answers(f"{SERVICE_URL}/health/ready"):
        _unavailable("No models loaded in inference service")


@pytest.fixture
def skip_if_gateway_unavailable() -> None:
    """Skip (fail in CI) unless the LiteLLM proxy answers its liveness probe."""
    if not _answers(f"{GATEWAY_URL}/health/liveliness"):
        _unavailable(f"LLM Gateway not available at {GATEWAY_URL}")


# --------------------------------------------------------------------------- HTTP clients


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A fresh client per test, so one test's connections or state cannot leak into the next."""
    async with httpx.AsyncClient(base_url=SERVICE_URL, timeout=REQUEST_TIMEOUT_S) as http:
        yield http


@pytest.fixture(scope="session")
async def async_client() -> AsyncIterator[httpx.AsyncClient]:
    """One pooled client for the whole session: the load tests reuse its keep-alive connections."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=SERVICE_URL, timeout=STREAM_TIMEOUT_S, limits=limits) as http:
        yield http


@pytest.fixture
async def gateway_client() -> AsyncIterator[httpx.AsyncClient]:
    """A client for the LiteLLM proxy; it sends the master key, without which the proxy refuses requests."""
    headers = {"Authorization": f"Bearer {GATEWAY_MASTER_KEY}"}
    async with httpx.AsyncClient(base_url=GATEWAY_URL, timeout=REQUEST_TIMEOUT_S, headers=headers) as http:
        yield http


# --------------------------------------------------------------------------- request builders


class ChatRequestFactory:
    """Request bodies for the suite. Small ``max_tokens`` defaults keep runs fast on a shared CPU."""

    @staticmethod
    def simple(
        message: str = "What is 2 + 2?", model: str = FAST_MODEL, max_tokens: int = 16, **extra: Any
    ) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": message}], "max_tokens": max_tokens, **extra}

    @staticmethod
    def with_system(
        system: str = "You are a terse assistant. Answer in one short sentence.",
        message: str = "What is the capital of France?",
        model: str = FAST_MODEL,
        max_tokens: int = 16,
        **extra: Any,
    ) -> dict[str, Any]:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": message}]
        return {"model": model, "messages": messages, "max_tokens": max_tokens, **extra}

    @classmethod
    def streaming(
        cls, message: str = "Count from 1 to 5.", model: str = FAST_MODEL, max_tokens: int = 16, **extra: Any
    ) -> dict[str, Any]:
        return cls.simple(message=message, model=model, max_tokens=max_tokens, stream=True, **extra)

    @classmethod
    def orchestrated(
        cls,
        mode: str = "critique",
        models: list[str] | None = None,
        message: str = "Name one primary colour.",
        model: str = ORCHESTRATION_MODEL,
        max_tokens: int = 8,
        **extra: Any,
    ) -> dict[str, Any]:
        """An orchestrated request; ``models`` pins the participants (else the service picks by role)."""
        body = cls.simple(message=message, model=model, max_tokens=max_tokens, orchestration_mode=mode, **extra)
        if models is not None:
            body["orchestration"] = {"models": models}
        return body

    @staticmethod
    def code_task(
        task: str = "Write a Python function that returns the sum of two numbers.",
        model: str | None = None,
        max_tokens: int = 24,
        **extra: Any,
    ) -> dict[str, Any]:
        """A ``task_type: code`` request. Without ``model`` the service picks its ``coder`` model."""
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": task}],
            "max_tokens": max_tokens,
            "task_type": "code",
            **extra,
        }
        if model is not None:
            body["model"] = model
        return body


@pytest.fixture
def chat_request_factory() -> type[ChatRequestFactory]:
    return ChatRequestFactory


# --------------------------------------------------------------------------- validators


class ResponseValidator:
    """Structural checks of OpenAI-shaped payloads; each raises AssertionError naming what is wrong."""

    @staticmethod
    def validate_completion(data: dict[str, Any]) -> None:
        assert data.get("object") == "chat.completion", f"object is {data.get('object')!r}"
        assert isinstance(data.get("id"), str) and data["id"], "missing id"
        assert isinstance(data.get("created"), int), "missing created timestamp"
        assert isinstance(data.get("model"), str) and data["model"], "missing model"
        choices = data.get("choices")
        assert isinstance(choices, list) and choices, "no choices"
        message = choices[0].get("message") or {}
        assert message.get("role") == "assistant", f"role is {message.get('role')!r}"
        assert isinstance(message.get("content"), str) and message["content"].strip(), "empty assistant content"
        assert choices[0].get("finish_reason") in ("stop", "length"), (
            f"finish_reason {choices[0].get('finish_reason')!r}"
        )

    @staticmethod
    def validate_usage(data: dict[str, Any], max_completion_tokens: int | None = None) -> None:
        usage = data.get("usage")
        assert isinstance(usage, dict), "missing usage"
        prompt, completion, total = (
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            usage.get("total_tokens"),
        )
        assert isinstance(prompt, int) and prompt > 0, f"prompt_tokens {prompt!r}"
        assert isinstance(completion, int) and completion > 0, f"completion_tokens {completion!r}"
        assert total == prompt + completion, f"total_tokens {total} != {prompt} + {completion}"
        if max_completion_tokens is not None:
            assert completion <= max_completion_tokens, (
                f"{completion} completion tokens exceed max_tokens {max_completion_tokens}"
            )

    @staticmethod
    def validate_orchestration(data: dict[str, Any], mode: str, min_models: int = 1) -> dict[str, Any]:
        """Check the ``orchestration`` object and return it."""
        orchestration = data.get("orchestration")
        assert isinstance(orchestration, dict), "missing orchestration metadata"
        assert orchestration.get("mode") == mode, f"mode {orchestration.get('mode')!r} != {mode!r}"
        models_used = orchestration.get("models_used")
        assert isinstance(models_used, list), "missing models_used"
        assert len(set(models_used)) >= min_models, (
            f"models_used {models_used} has fewer than {min_models} distinct models"
        )
        stages = orchestration.get("stages")
        assert isinstance(stages, list) and stages, "missing stages"
        for stage in stages:
            assert {"role", "model", "usage", "latency_ms"} <= stage.keys(), f"incomplete stage {stage}"
        assert isinstance(orchestration.get("degraded"), bool), "missing degraded flag"
        return orchestration

    @staticmethod
    def validate_streaming_chunk(chunk: dict[str, Any]) -> None:
        assert chunk.get("object") == "chat.completion.chunk", f"object is {chunk.get('object')!r}"
        assert isinstance(chunk.get("id"), str) and chunk["id"], "chunk without id"
        assert isinstance(chunk.get("model"), str) and chunk["model"], "chunk without model"
        choices = chunk.get("choices")
        assert isinstance(choices, list), "chunk without choices list"
        for choice in choices:  # the usage-only chunk of stream_options.include_usage has none
            assert isinstance(choice.get("delta"), dict), f"choice without delta: {choice}"


@pytest.fixture
def response_validator() -> type[ResponseValidator]:
    return ResponseValidator


# --------------------------------------------------------------------------- SSE


class SSEParser:
    """Parses OpenAI-style Server-Sent Events: ``data: <json>`` events ended by ``data: [DONE]``."""

    DONE = "[DONE]"

    @classmethod
    def parse_line(cls, line: str) -> dict[str, Any] | str | None:
        """The JSON payload of a ``data:`` line, :attr:`DONE` for the terminator, None for anything else
        (blank separators, ``: comment`` keep-alives, other fields)."""
        if not line.startswith("data:"):
            return None
        payload = line[len("data:") :].strip()
        if payload == cls.DONE:
            return cls.DONE
        parsed = json.loads(payload)
        assert isinstance(parsed, dict), f"SSE data is not a JSON object: {payload[:200]}"
        return parsed

    @classmethod
    def parse_stream(cls, text: str) -> list[dict[str, Any]]:
        """Every JSON event before ``[DONE]``; fails if the terminator is missing or something follows it."""
        chunks: list[dict[str, Any]] = []
        done = False
        for line in text.splitlines():
            event = cls.parse_line(line)
            if event is None:
                continue
            assert not done, f"event after [DONE]: {line[:200]}"
            if event == cls.DONE:
                done = True
            elif isinstance(event, dict):
                chunks.append(event)
        assert done, "stream ended without data: [DONE]"
        return chunks

    @staticmethod
    def extract_content(chunks: list[dict[str, Any]]) -> str:
        """The streamed assistant text: every ``delta.content`` in order."""
        return "".join(
            (choice.get("delta") or {}).get("content") or ""
            for chunk in chunks
            for choice in chunk.get("choices") or []
        )


@pytest.fixture
def sse_parser() -> type[SSEParser]:
    return SSEParser


# --------------------------------------------------------------------------- helpers for the tests


async def post_stream(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    """POST and read the body exactly as sent - raw bytes, not decoded - so framing can be checked."""
    async with http.stream("POST", path, json=body, timeout=STREAM_TIMEOUT_S) as response:
        raw = b"".join([part async for part in response.aiter_raw()])
    return response, raw


async def requests_total(
    http: httpx.AsyncClient, model_id: str, endpoint: str = "chat/completions", status: str = "200"
) -> float:
    """The service's ``inference_requests_total`` counter for one model: proof a request reached it."""
    response = await http.get("/metrics")
    assert response.status_code == 200, f"/metrics answered {response.status_code}"
    wanted = {"model": model_id, "endpoint": endpoint, "status": status}
    for line in response.text.splitlines():
        if line.startswith("inference_requests_total{"):
            labels, value = line[len("inference_requests_total{") :].rsplit("} ", 1)
            if dict(_LABEL.findall(labels)) == wanted:
                return float(value)
    return 0.0


async def model_card(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """The service's model card for an id or alias (its canonical id, state, pid ...)."""
    response = await http.get(f"/v1/models/{name}")
    assert response.status_code == 200, f"GET /v1/models/{name}: {response.status_code} {response.text[:200]}"
    card: dict[str, Any] = response.json()
    return card
