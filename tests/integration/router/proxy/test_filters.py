"""A model's request filters reach llama-server as configured, whichever API the client speaks,
for orchestration stages too, and a config reload changes them for the next request.

Read on the wire: the filtered model is a remote route to SmolLM2's own llama-server through a
wiretap, so every byte the router sends upstream is recorded while the real server answers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.events import listening
from tests.support.service import ServiceProcess, running_service
from tests.support.wiretap import Wiretap, wiretap

pytestmark = pytest.mark.integration

FILTERED_ID = "smollm2-filtered"
#: A cap below what every request here asks for, so the cap shows; tiny, so the shared CPU stays free.
CAP = 3
FILTERS = {"defaults": {"temperature": 0.6}, "overrides": {"max_tokens": CAP}, "strip": ["top_k", "logit_bias"]}
#: What the reload test switches to: every rule different.
RELOADED_FILTERS = {"defaults": {"top_p": 0.5}, "overrides": {"max_tokens": 2}, "strip": ["seed"]}
#: Fields every request sends that the filters remove.
STRIPPED = {"top_k": 5, "logit_bias": {"1": 1}}


def configure(path: Path, tap: Wiretap, filters: dict[str, Any]) -> Path:
    filtered = {"runtime": "remote", "url": f"http://127.0.0.1:{tap.port}", "upstream_model": SMOLLM2_ID}
    models = {SMOLLM2_ID: smollm2(preload=True, ctx_size=1024), FILTERED_ID: {**filtered, "filters": filters}}
    return write_config(path, models)


@pytest.fixture(scope="module")
def router_and_tap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Wiretap, Path]]:
    """A router whose filtered route goes through a wiretap to SmolLM2's child (looked up per connection)."""
    directory = tmp_path_factory.mktemp("filters")
    started: list[ServiceProcess] = []
    with wiretap(
        lambda: int(model_card(started[0], SMOLLM2_ID)["port"]), lambda: child_headers(started[0], SMOLLM2_ID)
    ) as tap:
        config = configure(directory / "config.toml", tap, FILTERS)
        with running_service(config, directory / "logs", wait_ready=True) as service:
            started.append(service)
            # The start-up probe of the remote route comes before the tap can look the child up: it recovers.
            wait_until(lambda: model_card(service, FILTERED_ID)["status"] == "loaded", timeout_s=60)
            yield service, tap, config


@pytest.fixture(scope="module")
def router(router_and_tap: tuple[ServiceProcess, Wiretap, Path]) -> ServiceProcess:
    return router_and_tap[0]


@pytest.fixture(scope="module")
def http(router: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router.url, timeout=120) as client:
        yield client


def upstream_bodies(tap: Wiretap, marker: str) -> list[dict[str, Any]]:
    """The JSON bodies that went through the tap carrying ``marker``."""
    return [
        json.loads(request.body)
        for request in tap.requests()
        if request.method == "POST" and marker.encode() in request.body
    ]


def messages(marker: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Repeat {marker}"}]


#: Per API family: its path and a body asking for more tokens than the cap, with the fields to strip.
FAMILIES: dict[str, tuple[str, Any]] = {
    "openai-chat": ("/v1/chat/completions", lambda m: {"messages": messages(m), "max_tokens": 20, **STRIPPED}),
    "openai-chat-stream": (
        "/v1/chat/completions",
        lambda m: {"messages": messages(m), "max_tokens": 20, "stream": True, **STRIPPED},
    ),
    "openai-chat-n_predict": ("/v1/chat/completions", lambda m: {"messages": messages(m), "n_predict": 20, **STRIPPED}),
    "openai-completions": ("/v1/completions", lambda m: {"prompt": f"Repeat {m}", "max_tokens": 20, **STRIPPED}),
    "anthropic-messages": ("/v1/messages", lambda m: {"messages": messages(m), "max_tokens": 20, **STRIPPED}),
    "responses": ("/v1/responses", lambda m: {"input": f"Repeat {m}", "max_output_tokens": 20, **STRIPPED}),
    "ollama-chat": (
        "/api/chat",
        lambda m: {"messages": messages(m), "stream": False, "options": {"num_predict": 20, "top_k": 5}},
    ),
}
#: The field each family's upstream body bounds its tokens with.
TOKEN_FIELD = {"responses": "max_output_tokens", "openai-chat-n_predict": "n_predict"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_filters_reach_llama_server_for_each_api_family(
    http: httpx.Client, router_and_tap: tuple[ServiceProcess, Wiretap, Path], family: str
) -> None:
    _, tap, _ = router_and_tap
    path, body = FAMILIES[family]
    marker = uuid.uuid4().hex
    response = http.post(path, json={"model": FILTERED_ID, **body(marker)})
    assert response.status_code == 200, response.text

    (upstream,) = upstream_bodies(tap, marker)
    token_field = TOKEN_FIELD.get(family, "max_tokens")
    assert upstream[token_field] == CAP  # the client asked for 20: capped
    assert upstream["temperature"] == 0.6  # the client set none: the default
    assert not {"top_k", "logit_bias"} & set(upstream)  # stripped


def test_a_smaller_max_tokens_of_the_client_is_kept(
    http: httpx.Client, router_and_tap: tuple[ServiceProcess, Wiretap, Path]
) -> None:
    _, tap, _ = router_and_tap
    marker = uuid.uuid4().hex
    body = {"model": FILTERED_ID, "messages": messages(marker), "max_tokens": 1, "temperature": 0}
    assert http.post("/v1/chat/completions", json=body).status_code == 200
    (upstream,) = upstream_bodies(tap, marker)
    assert (upstream["max_tokens"], upstream["temperature"]) == (1, 0)  # under the cap; the client's own value


def test_the_filters_reach_llama_server_for_every_orchestration_stage_on_the_model(
    http: httpx.Client, router_and_tap: tuple[ServiceProcess, Wiretap, Path]
) -> None:
    _, tap, _ = router_and_tap
    marker = uuid.uuid4().hex
    body = {
        "model": FILTERED_ID,
        "messages": messages(marker),
        "max_tokens": 6,
        "orchestration_mode": "critique",
        "orchestration": {"models": [FILTERED_ID, SMOLLM2_ID]},  # the critic is SmolLM2 itself, not tapped
        **STRIPPED,
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert [stage["model"] for stage in response.json()["orchestration"]["stages"]] == [
        FILTERED_ID,
        SMOLLM2_ID,
        FILTERED_ID,
    ]

    generator, reviser = upstream_bodies(tap, marker)
    for upstream in (generator, reviser):
        assert upstream["max_tokens"] == CAP
        assert upstream["temperature"] == 0.6
        assert not {"top_k", "logit_bias"} & set(upstream)


def test_the_model_card_shows_the_filters(router: ServiceProcess) -> None:
    card = model_card(router, FILTERED_ID)
    assert card["filters"] == FILTERS
    assert model_card(router, SMOLLM2_ID)["filters"] == {"defaults": {}, "overrides": {}, "strip": []}


def test_the_request_event_names_what_the_filters_changed(router: ServiceProcess, http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    with listening(f"{router.url}/v1/events?types=request") as events:
        body = {"model": FILTERED_ID, "messages": messages(marker), "max_tokens": 20, "top_k": 5}
        response = http.post("/v1/chat/completions", json=body, headers={"X-Request-ID": marker})
        assert response.status_code == 200, response.text
        event = events.wait_for(lambda e: e.get("request_id") == marker, timeout_s=30)
    assert event["filtered"] == {FILTERED_ID: ["temperature=0.6", f"max_tokens={CAP}", "-top_k"]}


@pytest.fixture
def reloaded(router_and_tap: tuple[ServiceProcess, Wiretap, Path]) -> Iterator[httpx.Response]:
    """The router reloaded with RELOADED_FILTERS; the original filters are reloaded back afterwards."""
    service, tap, config = router_and_tap
    configure(config, tap, RELOADED_FILTERS)
    try:
        yield httpx.post(f"{service.url}/admin/reload", timeout=120)
    finally:
        configure(config, tap, FILTERS)
        httpx.post(f"{service.url}/admin/reload", timeout=120).raise_for_status()


def test_a_reload_changes_the_filters_for_the_next_request(
    reloaded: httpx.Response, http: httpx.Client, router_and_tap: tuple[ServiceProcess, Wiretap, Path]
) -> None:
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["updated"] == [FILTERED_ID] and reloaded.json()["restarted"] == []
    _, tap, _ = router_and_tap
    marker = uuid.uuid4().hex
    body = {"model": FILTERED_ID, "messages": messages(marker), "max_tokens": 20, "seed": 3, **STRIPPED}
    assert http.post("/v1/chat/completions", json=body).status_code == 200

    (upstream,) = upstream_bodies(tap, marker)
    assert upstream["max_tokens"] == 2 and upstream["top_p"] == 0.5 and "seed" not in upstream
    assert "temperature" not in upstream and upstream["top_k"] == 5  # the old rules are gone
