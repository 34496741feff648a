"""Every stream's tokens are counted, whichever API it speaks: a real llama-server's streams through the router.

The runtime reports a stream's usage where its API puts it - an OpenAI chat stream's usage chunk (asked
for by the router when the client did not), Anthropic's ``message_start`` (input) and ``message_delta``
(output), the Responses API's ``response.completed`` - and the router counts it in /metrics and in the
key's ledger (/v1/usage), as it counts a non-streamed call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

STREAMERS = ("chat", "messages", "responses")
KEYS = {
    **{name: {"key": f"k-{name}", "scopes": ["inference"]} for name in (*STREAMERS, "reference")},
    "ops": {"key": "k-ops", "scopes": ["admin", "read"]},
}
HI = [{"role": "user", "content": "Say hi."}]
SHORT = {"temperature": 0, "seed": 7}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("stream-usage")
    models = {SMOLLM2_ID: smollm2(preload=True, roles=["primary"], ctx_size=1024)}
    config = write_config(directory / "config.toml", models, keys=KEYS, usage_db=str(directory / "router.db"))
    with running_service(config, directory / "logs", wait_ready=True) as service:
        yield service


def client(service: ServiceProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer k-{key}"}, timeout=300)


def counted_tokens(service: ServiceProcess) -> tuple[float, float]:
    """The model's prompt and completion tokens in /metrics."""
    with client(service, "ops") as ops:
        metrics = ops.get("/metrics").text
    prompt = sample(metrics, "inference_prompt_tokens_total", model=SMOLLM2_ID) or 0.0
    completion = sample(metrics, "inference_completion_tokens_total", model=SMOLLM2_ID) or 0.0
    return prompt, completion


def ledger_tokens(service: ServiceProcess, key: str) -> tuple[int, int]:
    """The key's prompt and completion tokens in the usage ledger (written every 2 s)."""
    with client(service, "ops") as ops:
        rows = ops.get("/v1/usage", params={"key": key}).json()["data"]
    return sum(row["prompt_tokens"] for row in rows), sum(row["completion_tokens"] for row in rows)


def events(key: str, service: ServiceProcess, path: str, body: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """A stream's events as the client gets them: (``event:`` name or None, decoded data)."""
    with client(service, key) as http, http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        text = response.read().decode()
    parsed = []
    for event in filter(None, text.split("\n\n")):
        lines = dict(line.split(": ", 1) for line in event.split("\n") if ": " in line)
        data = lines.get("data", "")
        parsed.append((lines.get("event"), data if data == "[DONE]" else json.loads(data)))
    return parsed


def assert_counted(service: ServiceProcess, key: str, before: tuple[float, float], usage: tuple[int, int]) -> None:
    """``usage`` (prompt, completion) is added to /metrics and is the key's whole ledger."""
    expected = (before[0] + usage[0], before[1] + usage[1])
    wait_until(lambda: counted_tokens(service) == expected, timeout_s=10)
    wait_until(lambda: ledger_tokens(service, key) == usage, timeout_s=30)


def test_a_chat_stream_whose_client_did_not_ask_for_usage_is_counted_and_gets_no_usage_chunk(
    service: ServiceProcess,
) -> None:
    body = {"model": SMOLLM2_ID, "messages": HI, "max_tokens": 3, **SHORT}
    with client(service, "reference") as http:  # the same call not streamed: the usage the runtime reports for it
        reference = http.post("/v1/chat/completions", json=body).json()["usage"]
    before = counted_tokens(service)

    streamed = events("chat", service, "/v1/chat/completions", body)

    assert streamed[-1] == (None, "[DONE]")
    assert all(isinstance(data, dict) and data["choices"] and "usage" not in data for _, data in streamed[:-1])
    assert_counted(service, "chat", before, (reference["prompt_tokens"], reference["completion_tokens"]))


def test_an_anthropic_messages_stream_is_counted(service: ServiceProcess) -> None:
    before = counted_tokens(service)

    streamed = dict(
        events("messages", service, "/v1/messages", {"model": SMOLLM2_ID, "messages": HI, "max_tokens": 3, **SHORT})
    )

    usage = (
        streamed["message_start"]["message"]["usage"]["input_tokens"],
        streamed["message_delta"]["usage"]["output_tokens"],
    )
    assert usage[0] > 0 and usage[1] > 0
    assert_counted(service, "messages", before, usage)


def test_a_responses_stream_is_counted(service: ServiceProcess) -> None:
    before = counted_tokens(service)

    streamed = dict(
        events(
            "responses",
            service,
            "/v1/responses",
            {"model": SMOLLM2_ID, "input": "Say hi.", "max_output_tokens": 3, **SHORT},
        )
    )

    reported = streamed["response.completed"]["response"]["usage"]
    usage = (reported["input_tokens"], reported["output_tokens"])
    assert usage[0] > 0 and usage[1] > 0
    assert_counted(service, "responses", before, usage)
