"""Per-key limits: concurrency, requests and tokens per minute, the headers, and a reload."""

from __future__ import annotations

import pytest

from inference_service.router.tenancy.keys import Tenant
from inference_service.router.tenancy.limits import BYTES_PER_TOKEN, Exceeded, Limits, Ticket, reset_text


class Clock:
    """Time that moves only when the test says so: a bucket's refill is arithmetic on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(name: str = "batch", **limits: int) -> Tenant:
    return Tenant(name, frozenset({"inference"}), **limits)  # type: ignore[arg-type]


def admitted(limits: Limits, tenant: Tenant, body_bytes: int = 0) -> Ticket:
    ticket = limits.admit(tenant, body_bytes)
    assert isinstance(ticket, Ticket), ticket
    return ticket


def refused(limits: Limits, tenant: Tenant, body_bytes: int = 0) -> Exceeded:
    outcome = limits.admit(tenant, body_bytes)
    assert isinstance(outcome, Exceeded), outcome
    return outcome


def test_a_key_without_limits_is_not_tracked() -> None:
    tenant = key()
    assert Limits({"batch": tenant}).admit(tenant, 100) is None


def test_max_concurrent_refuses_until_one_request_ends() -> None:
    tenant = key(max_concurrent=2)
    limits = Limits({"batch": tenant})
    first, _ = admitted(limits, tenant), admitted(limits, tenant)
    assert refused(limits, tenant).limit == "concurrent"
    first.close(None)
    admitted(limits, tenant)


def test_requests_per_minute_allow_a_burst_then_the_rate() -> None:
    clock = Clock()
    tenant = key(requests_per_minute=6)
    limits = Limits({"batch": tenant}, clock)
    for _ in range(6):
        admitted(limits, tenant).close(None)
    exceeded = refused(limits, tenant)
    assert (exceeded.limit, exceeded.retry_after_s) == ("requests", 10)  # one request per 10 s
    clock.now += 10
    admitted(limits, tenant)


def test_tokens_are_estimated_from_the_body_and_settled_from_the_usage() -> None:
    clock = Clock()
    tenant = key(tokens_per_minute=600)
    limits = Limits({"batch": tenant}, clock)
    ticket = admitted(limits, tenant, body_bytes=100 * BYTES_PER_TOKEN)  # estimate: 100 tokens
    assert dict(limits.headers(tenant))[b"x-ratelimit-remaining-tokens"] == b"500"
    ticket.close(used_tokens=700)  # the answer ran long: 600 more than estimated
    assert dict(limits.headers(tenant))[b"x-ratelimit-remaining-tokens"] == b"0"  # below zero, shown as 0
    exceeded = refused(limits, tenant)
    assert exceeded.limit == "tokens" and exceeded.retry_after_s == 11  # -100 to +1 at 10 tokens/s
    clock.now += 11
    admitted(limits, tenant)


def test_a_chunked_body_is_charged_its_size_once_read() -> None:
    tenant = key(tokens_per_minute=600)
    limits = Limits({"batch": tenant}, Clock())
    ticket = admitted(limits, tenant)  # no Content-Length: nothing to estimate at the door
    ticket.body_read(100 * BYTES_PER_TOKEN)
    assert dict(limits.headers(tenant))[b"x-ratelimit-remaining-tokens"] == b"500"
    ticket.close(None)  # no usage reported: the estimate from the body stands
    assert dict(limits.headers(tenant))[b"x-ratelimit-remaining-tokens"] == b"500"


def test_a_body_as_long_as_declared_is_not_charged_twice() -> None:
    tenant = key(tokens_per_minute=600)
    limits = Limits({"batch": tenant}, Clock())
    admitted(limits, tenant, body_bytes=100 * BYTES_PER_TOKEN).body_read(100 * BYTES_PER_TOKEN)
    assert dict(limits.headers(tenant))[b"x-ratelimit-remaining-tokens"] == b"500"


def test_an_estimate_beyond_the_whole_budget_passes_when_the_bucket_is_full() -> None:
    tenant = key(tokens_per_minute=50)
    limits = Limits({"batch": tenant}, Clock())
    admitted(limits, tenant, body_bytes=1000 * BYTES_PER_TOKEN)
    assert refused(limits, tenant).limit == "tokens"


def test_a_refusal_takes_nothing_from_any_bucket() -> None:
    tenant = key(requests_per_minute=10, tokens_per_minute=10)
    limits = Limits({"batch": tenant}, Clock())
    admitted(limits, tenant, body_bytes=10 * BYTES_PER_TOKEN)  # the tokens are spent
    refused(limits, tenant)
    assert dict(limits.headers(tenant))[b"x-ratelimit-remaining-requests"] == b"9"


def test_the_headers_say_limit_remaining_and_reset_in_openais_notation() -> None:
    tenant = key(requests_per_minute=60, tokens_per_minute=6000)
    limits = Limits({"batch": tenant}, Clock())
    admitted(limits, tenant, body_bytes=600 * BYTES_PER_TOKEN)
    assert dict(limits.headers(tenant)) == {
        b"x-ratelimit-limit-requests": b"60",
        b"x-ratelimit-remaining-requests": b"59",
        b"x-ratelimit-reset-requests": b"1s",
        b"x-ratelimit-limit-tokens": b"6000",
        b"x-ratelimit-remaining-tokens": b"5400",
        b"x-ratelimit-reset-tokens": b"6s",
    }


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0199, "20ms"), (0.5, "500ms"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"), (61, "1m1s")]
)
def test_reset_durations_read_as_openais(seconds: float, shown: str) -> None:
    assert reset_text(seconds) == shown


def test_a_reload_changes_the_limits_not_what_was_used() -> None:
    clock = Clock()
    limits = Limits({"batch": key(requests_per_minute=3)}, clock)
    for _ in range(3):
        admitted(limits, key(requests_per_minute=3))
    limits.configure({"batch": key(requests_per_minute=30)})
    assert refused(limits, key(requests_per_minute=30)).limit == "requests"


def test_a_key_removed_by_a_reload_is_forgotten() -> None:
    limits = Limits({"batch": key(max_concurrent=1)})
    limits.configure({})
    assert limits.headers(key(max_concurrent=1)) == []
