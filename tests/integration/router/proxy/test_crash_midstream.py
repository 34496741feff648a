"""A llama-server killed mid-stream under a stream that cannot be continued (it asks for logprobs, see
proxy/resume/): the client is told, and the model serves again after its restart."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.router.conftest import chat_body, wait_loaded
from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess
from tests.support.sse import DONE, sse_lines

pytestmark = pytest.mark.integration


@dataclass
class Crash:
    killed_pid: int
    data: list[str]  # every data payload the client received


@pytest.fixture(scope="module")
def crash(router: ServiceProcess) -> Crash:
    """Stream a long answer and SIGKILL the model's llama-server right after the first chunk."""
    pid = wait_loaded(router, SMOLLM2_ID)["pid"]
    data: list[str] = []
    with httpx.stream(
        "POST",
        router.url + "/v1/chat/completions",
        json=chat_body(max_tokens=400, stream=True, ignore_eos=True, logprobs=True),
        timeout=60,
    ) as response:
        assert response.status_code == 200
        for kind, payload in sse_lines(response):
            if kind == "data":
                if not data:
                    os.kill(pid, signal.SIGKILL)  # our own grandchild, by pid
                data.append(payload)
    return Crash(pid, data)


def test_stream_cut_by_a_crash_ends_with_an_error_event_then_one_done(crash: Crash) -> None:
    assert crash.data[-1] == DONE and crash.data.count(DONE) == 1
    assert crash.data[-2].startswith('{"error":'), crash.data[-2]


def test_the_crash_message_names_the_model_its_runtime_and_what_happened(crash: Crash) -> None:
    message = json.loads(crash.data[-2])["error"]["message"]
    assert SMOLLM2_ID in message and "llamacpp runtime" in message and "crashed" in message, message
    assert (
        "aiohttp" not in message and "ClientPayloadError" not in message and "TransferEncodingError" not in message
    ), message


def test_next_request_succeeds_once_the_supervisor_restarted_the_child(
    crash: Crash, router: ServiceProcess, client: httpx.Client
) -> None:
    card = wait_loaded(router, SMOLLM2_ID)
    assert card["pid"] != crash.killed_pid and card["restarts"] >= 1
    response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text
