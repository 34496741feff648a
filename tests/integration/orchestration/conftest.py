"""One real router with both tiny models, each in its own llama-server, shared by the package.

SmolLM2 holds the primary/fast roles and gemma the critic/thinker/coder roles, so every
multi-model mode really runs across two distinct processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.api import child_headers, model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until, write_config
from tests.support.service import ServiceProcess, running_service

PRESET = "code-review"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
#: Every stage shares the request's sampling fields: short and deterministic keeps the shared CPU free.
SHORT = {"max_tokens": 8, "temperature": 0, "seed": 7}


@pytest.fixture(scope="package")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("orchestration")
    models = {
        SMOLLM2_ID: smollm2(preload=True, roles=["primary", "fast"], ctx_size=4096),
        GEMMA_ID: gemma(preload=True, roles=["critic", "thinker", "coder"], ctx_size=4096),
    }
    presets = {
        PRESET: {
            "orchestration_mode": "critique",
            "models": [GEMMA_ID, SMOLLM2_ID],
            "roles": {"generator": "coder", "critic": "primary"},
        }
    }
    # resume_streams off: a stage whose runtime dies is not sent again, so a killed critic degrades the
    # critique (test_degraded); stages that survive their runtime are tested in continuity/.
    config = write_config(
        directory / "config.toml", models, default_model=SMOLLM2_ID, presets=presets, resume_streams=False
    )
    with running_service(config, directory / "logs", wait_ready=True) as service:
        yield service


@pytest.fixture(scope="package")
def client(router: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router.url, timeout=300.0) as http:
        yield http


def orchestrated(client: httpx.Client, mode: str, **fields: Any) -> httpx.Response:
    """POST an orchestrated chat completion (non-streaming) with short, deterministic stages."""
    return client.post(
        "/v1/chat/completions", json={"messages": QUESTION, "orchestration_mode": mode, **SHORT, **fields}
    )


#: The generator stage's answer in :func:`long_critique`: far longer than the router's release plus
#: llama-server's one-second poll for a hung-up non-streamed request, however fast the machine generates.
GENERATION_TOKENS = 1000


def long_critique(stream: bool) -> dict[str, Any]:
    """A critique whose generator stage runs long: a request to cut short while that stage runs."""
    return {
        "messages": QUESTION,
        "orchestration_mode": "critique",
        "max_tokens": GENERATION_TOKENS,
        "ignore_eos": True,
        "temperature": 0,
        "stream": stream,
    }


def child_metrics(router: ServiceProcess, model_id: str) -> str:
    """The model's own llama-server ``/metrics`` (started with ``--metrics``)."""
    port = model_card(router, model_id)["port"]
    return httpx.get(f"http://127.0.0.1:{port}/metrics", headers=child_headers(router, model_id), timeout=30).text


def stages_by_role(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {stage["role"]: stage for stage in body["orchestration"]["stages"]}


#: llama-server notices a hung-up non-streamed request when a second passes with no result for
#: any request; a ``/slots`` answer is a result, so polling faster would hold the notice off.
SLOTS_POLL_S = 1.5


def wait_for_idle_children(router: ServiceProcess) -> None:
    """Until no slot of either child is processing: a request an earlier test abandoned is
    counted in its child's ``tokens_predicted_total`` only when its slot is released."""
    for model_id in (SMOLLM2_ID, GEMMA_ID):
        port = model_card(router, model_id)["port"]

        def idle() -> bool:
            slots = httpx.get(
                f"http://127.0.0.1:{port}/slots", headers=child_headers(router, model_id), timeout=30
            ).json()
            return not any(slot["is_processing"] for slot in slots)

        wait_until(idle, timeout_s=120, interval_s=SLOTS_POLL_S)
