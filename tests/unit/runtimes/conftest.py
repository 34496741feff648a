"""An Ollama test server (no generation behind it) for the Ollama runtime and pull tests, and
the runtimes' teardown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from inference_service.runtimes.base import Runtime
from tests.support.configs import GEMMA_FILE, SMOLLM2_FILE
from tests.support.ollama_server import LibraryModel, OllamaTestServer

PULLED = "smollm2:135m"
NOT_PULLED = "gemma3:270m"


@pytest.fixture
def ollama() -> Iterator[OllamaTestServer]:
    """A fresh double per test: ``smollm2:135m`` pulled, ``gemma3:270m`` only in its library."""
    library = {PULLED: LibraryModel(SMOLLM2_FILE), NOT_PULLED: LibraryModel(GEMMA_FILE)}
    with OllamaTestServer(library, pulled=[PULLED]) as server:
        yield server


@pytest.fixture
async def stop_after() -> AsyncIterator[list[Runtime]]:
    """Runtimes a test adds here are stopped after it (stopping one twice is harmless)."""
    runtimes: list[Runtime] = []
    yield runtimes
    await asyncio.gather(*(runtime.stop() for runtime in runtimes))
