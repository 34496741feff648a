"""Traced routers: real routers exporting their spans to a real OTLP/HTTP receiver (tests/support/otlp.py).

``traced_router`` is shared by the package's tracing tests: SmolLM2 preloaded (the primary),
gemma not (a critic, loaded when a request needs it), a model that cannot load and falls
back to SmolLM2, and a remote route to SmolLM2's own llama-server through a wiretap (what
goes upstream is on the wire). ``remote_router`` starts a router with nothing but a remote
route to that same llama-server - no model of its own to load - for the tests of how
tracing is configured and how it fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.api import child_headers, model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, write_config
from tests.support.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.support.service import ServiceProcess, running_service
from tests.support.tapped_router import tapped_router
from tests.support.wiretap import Wiretap

BROKEN = "broken"
TAPPED = "smollm2-tapped"
REMOTE = "smollm2-remote"
#: Export at once: a test waits for its spans, not for the SDK's 5 s batching delay.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
HI = [{"role": "user", "content": "Say hi."}]


def tracing_env(receiver: OtlpReceiver, **more: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **FAST_EXPORT, **more}


@dataclass(frozen=True)
class CallerContext:
    """The W3C trace context a calling service sends (``traceparent``), with its ids."""

    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> CallerContext:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @property
    def headers(self) -> dict[str, str]:
        return {"traceparent": f"00-{self.trace_id}-{self.span_id}-01"}


@dataclass(frozen=True)
class Trace:
    """The spans of one request's trace, as the receiver got them."""

    spans: list[ReceivedSpan]

    @property
    def server(self) -> ReceivedSpan:
        (server,) = [span for span in self.spans if span.kind == "SERVER"]
        return server

    def named(self, name: str) -> list[ReceivedSpan]:
        return sorted((span for span in self.spans if span.name == name), key=lambda span: span.start_ns)

    def one(self, name: str) -> ReceivedSpan:
        (span,) = self.named(name)
        return span

    def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        return sorted((s for s in self.spans if s.parent_span_id == parent.span_id), key=lambda s: s.start_ns)

    def names(self, spans: list[ReceivedSpan]) -> list[str]:
        return [span.name for span in spans]


def trace_of(receiver: OtlpReceiver, trace_id: str, timeout_s: float = 60.0) -> Trace:
    """The whole trace once its SERVER span arrived: it ends last, and the SDK exports in the order spans end."""
    receiver.wait_for(lambda spans: any(s.trace_id == trace_id and s.kind == "SERVER" for s in spans), timeout_s)
    return Trace(receiver.trace(trace_id))


def trace_id_of(response: httpx.Response | Mapping[str, str]) -> str:
    """The trace id in a response's ``traceparent``."""
    headers = response.headers if isinstance(response, httpx.Response) else response
    return headers["traceparent"].split("-")[1]


def chat_body(model: str = SMOLLM2_ID, max_tokens: int = 3, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": HI, "max_tokens": max_tokens, "temperature": 0, "seed": 7, **fields}


@pytest.fixture(scope="package")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="package")
def traced_router_and_tap(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[tuple[ServiceProcess, Wiretap]]:
    models = {
        SMOLLM2_ID: smollm2(preload=True, roles=["primary", "fast"], ctx_size=2048),
        GEMMA_ID: gemma(roles=["critic", "thinker"], ctx_size=2048),
        BROKEN: smollm2(path="/nonexistent/model.gguf", fallbacks=[SMOLLM2_ID]),
    }
    with tapped_router(tmp_path_factory.mktemp("traced"), models, TAPPED, env=tracing_env(receiver)) as started:
        yield started


@pytest.fixture(scope="package")
def traced_router(traced_router_and_tap: tuple[ServiceProcess, Wiretap]) -> ServiceProcess:
    return traced_router_and_tap[0]


@pytest.fixture(scope="package")
def tap(traced_router_and_tap: tuple[ServiceProcess, Wiretap]) -> Wiretap:
    return traced_router_and_tap[1]


@pytest.fixture(scope="package")
def traced_client(traced_router: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=traced_router.url, timeout=300.0) as client:
        yield client


RemoteRouter = Callable[..., AbstractContextManager[ServiceProcess]]


@pytest.fixture(scope="module")
def remote_router(tmp_path_factory: pytest.TempPathFactory, traced_router: ServiceProcess) -> RemoteRouter:
    """``with remote_router(env, **top_level) as service``: a router whose one model, ``REMOTE``, is the
    traced router's SmolLM2 llama-server - ``env`` configures its tracing, ``top_level`` the rest."""
    directory = tmp_path_factory.mktemp("remote")

    @contextmanager
    def start(env: Mapping[str, str], **top_level: Any) -> Iterator[ServiceProcess]:
        port = model_card(traced_router, SMOLLM2_ID)["port"]
        key = child_headers(traced_router, SMOLLM2_ID)["Authorization"].removeprefix("Bearer ")
        model = {"runtime": "remote", "url": f"http://127.0.0.1:{port}", "api_key": key, "upstream_model": SMOLLM2_ID}
        config = write_config(directory / f"{secrets.token_hex(4)}.toml", {REMOTE: model}, **top_level)
        with running_service(config, directory / "logs", env=env, wait_ready=True) as service:
            yield service

    return start
