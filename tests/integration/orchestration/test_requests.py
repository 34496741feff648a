"""What an orchestrated request may ask for: modes, task types, presets, and the models it needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import PRESET, QUESTION, SHORT, orchestrated, stages_by_role
from tests.support.api import load, model_card, unload
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, smollm2, write_config
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_model_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A router with SmolLM2 only (not even loaded: planning refuses before any call)."""
    directory = tmp_path_factory.mktemp("one-model")
    config = write_config(directory / "config.toml", {SMOLLM2_ID: smollm2(roles=["primary"])})
    with running_service(config, directory / "logs") as service:
        yield service


@pytest.mark.parametrize("field", [{"orchestration_mode": "tournament"}, {"task_type": "poetry"}])
def test_unknown_mode_or_task_type_is_422(client: httpx.Client, field: dict[str, str]) -> None:
    response = client.post("/v1/chat/completions", json={"messages": QUESTION, **SHORT, **field})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == next(iter(field))


def test_critique_with_one_model_is_400_naming_the_need_and_the_available(one_model_router: ServiceProcess) -> None:
    body = {"messages": QUESTION, "orchestration_mode": "critique", **SHORT}
    response = httpx.post(one_model_router.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "at least 2" in message and SMOLLM2_ID in message


def test_single_mode_reports_orchestration_too(client: httpx.Client) -> None:
    response = orchestrated(client, "single")
    assert response.status_code == 200, response.text
    report = response.json()["orchestration"]
    assert (report["mode"], report["models_used"], len(report["stages"])) == ("single", [SMOLLM2_ID], 1)


@pytest.fixture
def gemma_unloaded(router: ServiceProcess) -> Iterator[None]:
    """gemma unloaded for the test, loaded again afterwards (the package's other tests expect it)."""
    assert unload(router, GEMMA_ID).status_code == 200
    try:
        yield
    finally:
        assert load(router, GEMMA_ID).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_single_mode_loads_no_model_but_its_own(
    router: ServiceProcess, client: httpx.Client, gemma_unloaded: None, stream: bool
) -> None:
    response = orchestrated(client, "single", model=SMOLLM2_ID, stream=stream)
    assert response.status_code == 200, response.text
    assert _orchestration(response)["models_used"] == [SMOLLM2_ID]
    assert model_card(router, GEMMA_ID)["status"] == "unloaded"


def _orchestration(response: httpx.Response) -> dict[str, Any]:
    """The orchestration object, of a JSON answer or of a stream's chunk that carries it."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        return dict(response.json()["orchestration"])
    chunks = [
        json.loads(line.removeprefix("data: ")) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    return next(dict(chunk["orchestration"]) for chunk in chunks if "orchestration" in chunk)


def test_preset_sets_the_mode_and_maps_stage_roles_to_models(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={"messages": QUESTION, "preset": PRESET, **SHORT})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["orchestration"]["mode"] == "critique"
    stages = stages_by_role(body)
    assert (stages["generator"]["model"], stages["critic"]["model"]) == (GEMMA_ID, SMOLLM2_ID)


def test_unknown_preset_is_400_listing_the_known_ones(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={"messages": QUESTION, "preset": "nope", **SHORT})
    assert response.status_code == 400
    assert PRESET in response.json()["error"]["message"]
