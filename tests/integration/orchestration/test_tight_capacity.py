"""Orchestration over two models that cannot be resident together: the stages take turns."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.orchestration.conftest import QUESTION, SHORT
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, write_config
from tests.support.service import running_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    directory = tmp_path_factory.mktemp("one-slot")
    models = {SMOLLM2_ID: smollm2(roles=["primary", "fast"]), GEMMA_ID: gemma(roles=["critic", "thinker", "coder"])}
    config = write_config(directory / "config.toml", models, default_model=SMOLLM2_ID, max_loaded_models=1)
    with (
        running_service(config, directory / "logs") as service,
        httpx.Client(base_url=service.url, timeout=300) as client,
    ):
        yield client


@pytest.mark.parametrize("mode", ["critique", "debate", "ensemble", "pipeline"])
def test_every_mode_completes_over_two_models_with_one_slot(one_slot: httpx.Client, mode: str) -> None:
    response = one_slot.post("/v1/chat/completions", json={"messages": QUESTION, "orchestration_mode": mode, **SHORT})

    assert response.status_code == 200, response.text
    orchestration = response.json()["orchestration"]
    assert orchestration["degraded"] is False, orchestration
    assert sorted(orchestration["models_used"]) == sorted([SMOLLM2_ID, GEMMA_ID])


def test_a_streamed_orchestration_completes_too(one_slot: httpx.Client) -> None:
    body = {"messages": QUESTION, "orchestration_mode": "critique", "stream": True, **SHORT}
    with one_slot.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]

    assert response.status_code == 200
    assert lines[-1] == "data: [DONE]"
    assert '"orchestration"' in lines[-2] and '"error"' not in "".join(lines)
