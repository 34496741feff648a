"""Defect 6 (issue 23): measuring a model's footprint must not stall the event loop.

Under a memory budget the supervisor reads the GGUF header before loading. It used to do
so on the event loop, one ``read()`` per vocabulary string: every request, stream and
health check of the service stood still for as long as that took. A probe that ticks on
the loop every 10 ms shows the stall as the longest gap between two ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference_service.config import Settings
from inference_service.supervisor import Supervisor
from tests.support.gguf import write_gguf
from tests.unit.supervisor.fakes import FakeRuntime

pytestmark = pytest.mark.timeout(60)

#: Four times Gemma 3's 262k: long enough to read that a stall stands out of a busy machine's noise.
VOCABULARY = 1_048_576
TICK_S = 0.01


@pytest.fixture(scope="module")
def large_vocabulary_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    metadata = {
        "general.architecture": "llama",
        "tokenizer.ggml.tokens": [f"token-{index}" for index in range(VOCABULARY)],
        "llama.block_count": 30,
        "llama.attention.head_count": 9,
        "llama.embedding_length": 576,
    }
    return write_gguf(tmp_path_factory.mktemp("gguf") / "large-vocabulary.gguf", metadata)


@pytest.fixture
async def budgeted_supervisor(large_vocabulary_model: Path) -> AsyncIterator[Supervisor]:
    """A supervisor under a memory budget, over a fake runtime: only the footprint is real work."""
    settings = Settings(memory_budget_mb=100_000, models={"big": {"path": str(large_vocabulary_model)}})
    supervisor = Supervisor(settings, lambda config: FakeRuntime(config.id))
    yield supervisor
    await supervisor.close()


class LoopProbe:
    """A task ticking every ``TICK_S`` on the event loop: the longest gap between ticks is the longest stall."""

    def __init__(self) -> None:
        self.longest_gap_s = 0.0
        self._last = time.monotonic()

    def _tick(self) -> None:
        now = time.monotonic()
        self.longest_gap_s = max(self.longest_gap_s, now - self._last)
        self._last = now

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopProbe]:
        async def ticking() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                self._tick()

        self._last = time.monotonic()
        ticker = asyncio.create_task(ticking())
        try:
            yield self
        finally:
            self._tick()  # a stall that lasted until the end counts too
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)


async def test_loading_under_a_memory_budget_reads_the_gguf_header_off_the_event_loop(
    budgeted_supervisor: Supervisor,
) -> None:
    async with LoopProbe().running() as probe:
        started = time.monotonic()
        await budgeted_supervisor.load("big")
        load_s = time.monotonic() - started

    assert budgeted_supervisor.status("big").footprint_mb, "the header was read"
    # On the loop, the longest gap was the whole read (~0.8 s here, most of the load); off it, a tick or two.
    stall_s = probe.longest_gap_s
    assert stall_s < load_s / 2, f"the event loop stood still {stall_s:.3f}s of a {load_s:.3f}s load"
