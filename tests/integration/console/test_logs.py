"""Log tails followed live: a model runtime's output and the router's own log (access lines included)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.console.conftest import AUTH, chat_body
from tests.support.configs import SMOLLM2_ID
from tests.support.events import listening
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


def test_model_logs_need_the_api_key(console_router: ServiceProcess) -> None:
    assert httpx.get(f"{console_router.url}/v1/models/{SMOLLM2_ID}/logs?follow=true", timeout=10).status_code == 401


def test_model_log_without_follow_is_the_json_tail(api: httpx.Client) -> None:
    response = api.get(f"/v1/models/{SMOLLM2_ID}/logs", params={"tail": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == SMOLLM2_ID and len(body["lines"]) == 3


def test_model_log_follow_sends_the_tail_then_lines_written_later(
    console_router: ServiceProcess, api: httpx.Client
) -> None:
    before = api.get("/v1/models/smol/logs").json()["lines"]
    with listening(f"{console_router.url}/v1/models/smol/logs?follow=true&tail=2", AUTH) as stream:
        stream.wait_for(lambda e: True, timeout_s=10)
        assert api.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200
        # llama-server logs the timings of each task it served: new lines, after the tail
        stream.wait_for(lambda e: stream.events.index(e) >= 2 and "print_timing" in e["line"], timeout_s=10)
    assert [e["line"] for e in stream.events[:2]] == before[-2:]
    assert {e["model"] for e in stream.events} == {SMOLLM2_ID}


def test_router_log_follow_shows_the_access_line_of_a_later_request(
    console_router: ServiceProcess, api: httpx.Client
) -> None:
    request_id = f"follow-{uuid.uuid4().hex[:8]}"
    with listening(f"{console_router.url}/v1/logs?follow=true&tail=0", AUTH) as stream:
        assert api.get("/v1/models", headers={"X-Request-ID": request_id}).status_code == 200
        event = stream.wait_for(lambda e: request_id in e["line"], timeout_s=10)
    assert "GET /v1/models 200" in event["line"] and event["model"] is None
