"""Fixtures for the router acceptance tests.

``router`` is one real router shared by the package's modules that only need the default
shape (SmolLM2 preloaded, a small body cap, a wiretapped second route to the same
llama-server). Modules that need a different config (queue limits, an API key, a
capacity limit) start their own with ``start_router``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest

from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.service import ServiceProcess, running_service
from tests.support.tapped_router import tapped_router
from tests.support.wiretap import Wiretap

#: A remote-runtime route to SmolLM2's own llama-server, through a wiretap.
TAPPED_ID = "smollm2-tapped"
#: The shared router's request body cap: small enough to exceed cheaply in a test.
MAX_BODY_BYTES = 64 * 1024
HI = [{"role": "user", "content": "Say hi."}]

StartRouter = Callable[..., ServiceProcess]


def child_url(service: ServiceProcess, model_id: str) -> str:
    """The base URL of the model's own llama-server, from the port the router reports."""
    port = model_card(service, model_id)["port"]
    assert port, f"{model_id} has no child port: {model_card(service, model_id)}"
    return f"http://127.0.0.1:{port}"


def wait_loaded(service: ServiceProcess, model_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The model's card once it is ``loaded`` with a live process."""
    return wait_until(
        lambda: (card := model_card(service, model_id))["status"] == "loaded" and card["pid"] and card, timeout_s
    )


def chat_body(max_tokens: int = 4, **fields: Any) -> dict[str, Any]:
    """A short, deterministic chat request (keeps the shared CPU free)."""
    return {"model": SMOLLM2_ID, "messages": HI, "max_tokens": max_tokens, "temperature": 0, "seed": 7, **fields}


@pytest.fixture(scope="package")
def router_and_tap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Wiretap]]:
    """The shared router, and the wiretap behind its ``smollm2-tapped`` route."""
    models = {SMOLLM2_ID: smollm2(preload=True, aliases=["smol"], roles=["primary", "fast"], ctx_size=2048)}
    # parallel = 1: a remote model is uncapped by default; the queue tests need one slot.
    with tapped_router(
        tmp_path_factory.mktemp("router"), models, TAPPED_ID, {"parallel": 1}, max_body_bytes=MAX_BODY_BYTES
    ) as started:
        yield started


@pytest.fixture(scope="package")
def router(router_and_tap: tuple[ServiceProcess, Wiretap]) -> ServiceProcess:
    return router_and_tap[0]


@pytest.fixture(scope="package")
def tap(router_and_tap: tuple[ServiceProcess, Wiretap]) -> Wiretap:
    return router_and_tap[1]


@pytest.fixture(scope="module")
def start_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartRouter]:
    """Start routers of the module's own config; all are stopped (children too) after the module."""
    with ExitStack() as stack:
        directory = tmp_path_factory.mktemp("router-own")
        numbers = itertools.count()

        def start(
            models: Mapping[str, Mapping[str, Any]], wait_ready: bool = False, **top_level: Any
        ) -> ServiceProcess:
            config = write_config(directory / f"config-{next(numbers)}.toml", models, **top_level)
            return stack.enter_context(running_service(config, directory / "logs", wait_ready=wait_ready))

        yield start


@pytest.fixture(scope="module")
def client(router: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router.url, timeout=120.0) as http:
        yield http


@pytest.fixture(scope="module")
def sdk(router: ServiceProcess) -> Iterator[openai.OpenAI]:
    """The official OpenAI SDK pointed at the shared router."""
    with openai.OpenAI(base_url=router.url + "/v1", api_key="unused", timeout=120.0, max_retries=0) as client:
        yield client
