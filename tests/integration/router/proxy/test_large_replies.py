"""A large non-streamed reply (logprobs over the whole vocabulary) passes through the
router without being parsed: its memory stays a small multiple of the reply, and the
reply's token usage is still counted. One beyond ``max_reply_bytes`` is a 502."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.integration.router.conftest import HI, StartRouter
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

COMPLETION_TOKENS = 20
#: All of SmolLM2's 49,152-token vocabulary per generated token: a reply of ~90 MB (max_logprobs raised to allow it).
LARGE_LOGPROBS = {"logprobs": True, "top_logprobs": 100_000}
MAX_LOGPROBS = 100_000
#: The cap of the router that refuses large replies, and logprobs that make a reply of ~2 MB.
SMALL_MAX_REPLY_BYTES = 2**20
TWO_MB_LOGPROBS = {"logprobs": True, "top_logprobs": 1_000}
#: The router holds the reply as read and hands it to the server to send; parsing it took ~10x.
MAX_PEAK_GROWTH_PER_REPLY_BYTE = 4


@dataclass
class LargeReply:
    size: int
    peak_rss_growth: int
    completion_tokens_counted: float


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def chat(service: ServiceProcess, **fields: object) -> httpx.Response:
    body = {"model": SMOLLM2_ID, "messages": HI, "max_tokens": COMPLETION_TOKENS, "ignore_eos": True, **fields}
    return httpx.post(service.url + "/v1/chat/completions", json=body, timeout=300)


def completion_tokens(service: ServiceProcess) -> float:
    metrics = httpx.get(service.url + "/metrics").text
    return sample(metrics, "inference_completion_tokens_total", model=SMOLLM2_ID) or 0.0


@pytest.fixture(scope="module")
def large_reply(start_router: StartRouter) -> LargeReply:
    """One non-streamed chat request with full-vocabulary logprobs through a router of its own (a fresh VmHWM)."""
    router = start_router({SMOLLM2_ID: smollm2(preload=True)}, wait_ready=True, max_logprobs=MAX_LOGPROBS)
    tokens_before, peak_before = completion_tokens(router), peak_rss(router.pid)
    response = chat(router, **LARGE_LOGPROBS)
    assert response.status_code == 200, response.text[:500]
    return LargeReply(
        len(response.content), peak_rss(router.pid) - peak_before, completion_tokens(router) - tokens_before
    )


def test_a_large_reply_raises_the_routers_peak_memory_by_a_small_multiple_of_its_size(large_reply: LargeReply) -> None:
    assert large_reply.size > 50 * 2**20, f"the reply is only {large_reply.size:,} bytes: not the large case"
    limit = MAX_PEAK_GROWTH_PER_REPLY_BYTE * large_reply.size
    assert large_reply.peak_rss_growth < limit, (
        f"peak RSS grew {large_reply.peak_rss_growth / 2**20:.0f} MiB for a {large_reply.size / 2**20:.0f} MiB reply"
    )


def test_the_usage_of_a_large_reply_is_counted(large_reply: LargeReply) -> None:
    assert large_reply.completion_tokens_counted == COMPLETION_TOKENS


@pytest.fixture(scope="module")
def capped_router(start_router: StartRouter) -> ServiceProcess:
    return start_router(
        {SMOLLM2_ID: smollm2(preload=True)},
        wait_ready=True,
        max_reply_bytes=SMALL_MAX_REPLY_BYTES,
        max_logprobs=MAX_LOGPROBS,
    )


def test_a_reply_beyond_max_reply_bytes_is_a_502_reply_too_large(capped_router: ServiceProcess) -> None:
    response = chat(capped_router, **TWO_MB_LOGPROBS)
    assert response.status_code == 502, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "reply_too_large" and "max_reply_bytes" in error["message"], error


def test_a_reply_within_max_reply_bytes_passes(capped_router: ServiceProcess) -> None:
    response = chat(capped_router)
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == COMPLETION_TOKENS
