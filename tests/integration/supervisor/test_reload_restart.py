"""A config reload that restarts a model drops none of the requests queued for it.

SmolLM2 has one slot (``parallel = 1``): one streamed request holds it, four more wait
in its queue. The reload raises ``parallel`` to 4, a launch setting, so the model drains
the stream, stops and starts again with the new settings - and the four that waited are
then served by the new process, as they would be around ``POST /unload``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.events import listening
from tests.support.service import ServiceProcess, running_service
from tests.support.sse import DONE, sse_lines

pytestmark = pytest.mark.integration

QUEUED = 4
#: How long a client waits: the four wait out the stream, the drain and a load on a crowded machine.
WAIT_S = 600
#: The stream's length: it must still run while the reload starts its drain; it fits one slot of 2048.
STREAM_TOKENS = 200


def write_smollm2(path: Path, parallel: int) -> Path:
    """SmolLM2 preloaded with ``parallel`` slots; drains and queues outlast any request here."""
    models = {SMOLLM2_ID: smollm2(preload=True, parallel=parallel, ctx_size=2048)}
    return write_config(path, models, drain_timeout_s=WAIT_S, queue_timeout_s=WAIT_S)


def answered_at(url: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    """POST ``body`` and return the answer with the moment it came."""
    response = httpx.post(url, json=body, timeout=WAIT_S)
    return response, time.monotonic()


@pytest.fixture
def one_slot(tmp_path: Path) -> Iterator[tuple[ServiceProcess, Path]]:
    """A router serving SmolLM2 with one slot."""
    config = write_smollm2(tmp_path / "config.toml", parallel=1)
    with running_service(config, tmp_path / "logs", wait_ready=True) as service:
        yield service, config


def test_a_reload_that_restarts_a_model_serves_every_request_queued_before_it(
    one_slot: tuple[ServiceProcess, Path],
) -> None:
    service, config = one_slot
    old_pid = model_card(service, SMOLLM2_ID)["pid"]
    chat_url = f"{service.url}/v1/chat/completions"
    short = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
    body = {
        "model": SMOLLM2_ID,
        "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": STREAM_TOKENS,
        "ignore_eos": True,
        "stream": True,
    }
    with (
        ThreadPoolExecutor(QUEUED + 1) as pool,
        httpx.stream("POST", chat_url, json=body, timeout=WAIT_S) as stream,
    ):
        lines = sse_lines(stream)
        assert next(lines)[0] == "data"  # the one slot is taken
        queued = [pool.submit(answered_at, chat_url, short) for _ in range(QUEUED)]
        wait_until(lambda: model_card(service, SMOLLM2_ID)["queue_depth"] == QUEUED, timeout_s=30)
        write_smollm2(config, parallel=4)
        with listening(f"{service.url}/v1/events?types=model_state") as events:
            reload = pool.submit(httpx.post, f"{service.url}/admin/reload", timeout=WAIT_S)
            events.wait_for(lambda event: event["state"] == "unloading", timeout_s=30)  # draining the stream
            drain_began = time.monotonic()
        rest = [text for kind, text in lines if kind == "data"]  # read on: the drain waits for the stream's end

        assert stream.status_code == 200 and rest[-1] == DONE
        assert reload.result(timeout=WAIT_S).json()["restarted"] == [SMOLLM2_ID]
        answers = [future.result(timeout=WAIT_S) for future in queued]
    assert [answer.status_code for answer, _ in answers] == [200] * QUEUED, [answer.text for answer, _ in answers]
    assert all(at > drain_began for _, at in answers)  # they were still queued when the restart began
    card = model_card(service, SMOLLM2_ID)
    assert card["status"] == "loaded" and card["pid"] != old_pid
