"""Per-key limits: requests in flight, requests per minute, tokens per minute - one check per request.

Requests and tokens per minute are token buckets holding a minute's worth and refilled
continuously, so a key may burst up to its limit and then runs at its rate. A request's tokens
are not known until its runtime has answered, so admission takes an estimate - its body's
bytes / :data:`BYTES_PER_TOKEN`, about its prompt (a chunked body, which declares no length, is
charged once read; a body over ``max_body_bytes`` is refused before anything is charged, so no
estimate passes ``max_body_bytes`` / 4) - and the request's real usage (prompt and completion,
every orchestration stage, streams included) is settled when it ends: a key whose answers ran
long finds its bucket below zero and waits for it to refill, and a request that never reached a
model (a 404, a 400, a client gone while queued) gives its estimate back. The state of a key
lives as long as its name: a config reload changes the limits, not what was used.

Only the routes that need exactly the ``inference`` scope are metered (the work a model does),
and only when called with a method they answer (a 405 costs nothing). Every response the gate
lets through to a key with a per-minute limit carries OpenAI's ``x-ratelimit-*`` headers for
those limits, and so does its 429; ``max_concurrent`` has no header, so a key with only that
limit gets none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from inference_service.router.tenancy.keys import Tenant

#: Bytes of request body per token, for the admission estimate (English text runs 4 to a token).
BYTES_PER_TOKEN = 4


def estimate_tokens(body_bytes: int) -> int:
    """A body's tokens, about its prompt's: the one estimate, at admission and once a chunked body is read."""
    return -(-body_bytes // BYTES_PER_TOKEN)  # ceiling division


class _Bucket:
    """``capacity`` per minute, refilled continuously; the level may go below zero (settled usage)."""

    __slots__ = ("capacity", "level", "limit_header", "names", "per_s", "stamp")

    def __init__(self, kind: str, capacity: int, now: float) -> None:
        """``kind``: ``requests`` or ``tokens``, as the headers name it."""
        self.names = tuple(f"x-ratelimit-{what}-{kind}".encode() for what in ("limit", "remaining", "reset"))
        self.level = float(capacity)
        self.stamp = now
        self.resize(capacity)

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        self.per_s = capacity / 60
        self.limit_header = str(capacity).encode()  # computed once: it is on every response
        self.level = min(self.level, capacity)

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.per_s)
        self.stamp = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` is in the bucket (0: now); refill first."""
        return max(0.0, (amount - self.level) / self.per_s)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.per_s)

    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """OpenAI's three headers for this limit, as the bucket stands (they go out on every response,
        so the few calls they take are counted: ``%d`` of a positive level is its floor)."""
        limit, remaining, reset = self.names
        level = self.level
        return (
            (limit, self.limit_header),
            (remaining, b"%d" % level if level > 0 else b"0"),
            (reset, reset_text(self.reset_s()).encode()),
        )


class _KeyState:
    __slots__ = ("concurrent", "max_concurrent", "requests", "tokens")

    def __init__(self) -> None:
        self.max_concurrent: int | None = None
        self.concurrent = 0
        self.requests: _Bucket | None = None
        self.tokens: _Bucket | None = None


@dataclass(frozen=True)
class Exceeded:
    """Why a request was refused, and when the limit would let it in."""

    limit: str  # "concurrent", "requests" or "tokens"
    message: str
    retry_after_s: int


def reset_text(seconds: float) -> str:
    """OpenAI's notation for the reset headers: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _exceeded(tenant: Tenant, kind: str, bucket: _Bucket, amount: float) -> Exceeded:
    wait_s = bucket.wait_s(amount)
    return Exceeded(
        kind,
        f"the key {tenant.name!r} reached its {bucket.capacity} {kind} per minute; retry in {wait_s:.1f}s",
        max(1, math.ceil(wait_s)),
    )


def _state_headers(state: _KeyState) -> list[tuple[bytes, bytes]]:
    """The ``x-ratelimit-*`` headers of a key's buckets as they stand (refilled by the caller)."""
    requests, tokens = state.requests, state.tokens
    return [*(requests.headers() if requests else ()), *(tokens.headers() if tokens else ())]


class Ticket:
    """An admitted metered request: holds its place in the key's concurrency until closed, and the
    ``x-ratelimit-*`` headers of its response (the buckets as its admission left them)."""

    __slots__ = ("_closed", "_estimate", "_state", "headers")

    def __init__(self, state: _KeyState, estimated: int) -> None:
        self._state = state
        self._estimate = estimated
        self._closed = False
        self.headers = _state_headers(state)

    def body_read(self, body_bytes: int) -> None:
        """The body's real size, once read: a chunked body (no ``Content-Length``) was admitted on an
        estimate of nothing, and is charged now - it cannot dodge the limit (its next request waits)."""
        tokens = self._state.tokens
        if tokens is not None and (more := estimate_tokens(body_bytes) - self._estimate) > 0:
            tokens.level -= more
            self._estimate += more

    def close(self, used_tokens: int | None) -> None:
        """The request is over: free its place, and settle its estimate against what it used
        (``used_tokens`` None: unknown - a call reported no usage - so the estimate stands)."""
        if self._closed:
            return
        self._closed = True
        self._state.concurrent -= 1
        if self._state.tokens is not None and used_tokens is not None:
            self._state.tokens.level -= used_tokens - self._estimate


class Limits:
    """Every key's limit state, by name."""

    def __init__(self, tenants: Mapping[str, Tenant], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[str, _KeyState] = {}
        self.configure(tenants)

    def configure(self, tenants: Mapping[str, Tenant]) -> None:
        """Take the limits of ``tenants`` (a reload): what each key used so far is kept."""
        now = self._clock()
        states = {}
        for name, tenant in tenants.items():
            if not tenant.limited:
                continue
            state = self._states.get(name) or _KeyState()
            state.max_concurrent = tenant.max_concurrent
            state.requests = self._resized("requests", state.requests, tenant.requests_per_minute, now)
            state.tokens = self._resized("tokens", state.tokens, tenant.tokens_per_minute, now)
            states[name] = state
        self._states = states

    @staticmethod
    def _resized(kind: str, bucket: _Bucket | None, capacity: int | None, now: float) -> _Bucket | None:
        if capacity is None:
            return None
        if bucket is None:
            return _Bucket(kind, capacity, now)
        bucket.refill(now)
        bucket.resize(capacity)
        return bucket

    def admit(self, tenant: Tenant, body_bytes: int) -> Ticket | Exceeded | None:
        """The one limit check: a ticket to close when the request ends, why it is refused, or None
        for a key without limits. Nothing is taken from a bucket unless every limit lets it in."""
        state = self._states.get(tenant.name)
        if state is None:
            return None
        if state.max_concurrent is not None and state.concurrent >= state.max_concurrent:
            return Exceeded(
                "concurrent",
                f"the key {tenant.name!r} has {state.concurrent} requests in flight or queued (max_concurrent)",
                1,
            )
        now = self._clock()
        tokens_estimate = estimate_tokens(body_bytes)
        requests, tokens = state.requests, state.tokens
        if requests is not None:
            requests.refill(now)
            if requests.level < 1:
                return _exceeded(tenant, "requests", requests, 1)
        if tokens is not None:
            tokens.refill(now)
            if tokens.level < (needed := min(max(tokens_estimate, 1), tokens.capacity)):
                return _exceeded(tenant, "tokens", tokens, needed)
            tokens.level -= tokens_estimate
        if requests is not None:
            requests.level -= 1
        state.concurrent += 1
        return Ticket(state, tokens_estimate)

    def headers(self, tenant: Tenant) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*`` headers for the key's configured per-minute limits (none without)."""
        state = self._states.get(tenant.name)
        if state is None:
            return []
        now = self._clock()
        for bucket in (state.requests, state.tokens):
            if bucket is not None:
                bucket.refill(now)
        return _state_headers(state)
