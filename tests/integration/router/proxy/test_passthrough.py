"""The router forwards the client's JSON untouched - minus its own fields, which never reach a runtime.

"Untouched" means the same JSON document, not the same bytes: the router parses the body
(to route it and to strip its own fields) and serialises it again, so key order and
whitespace may differ; only ``model`` is replaced by the name the runtime knows.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.integration.router.conftest import TAPPED_ID, chat_body
from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess
from tests.support.sse import post_sse
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration

ROUTER_ONLY = {"orchestration_mode": "single", "task_type": "general", "priority": 3, "preset": None}


def _upstream_bodies(tap: Wiretap, marker: str) -> list[dict[str, object]]:
    """The JSON bodies the router sent through the tap whose messages carry ``marker``."""
    return [
        json.loads(request.body)
        for request in tap.requests()
        if request.method == "POST" and marker.encode() in request.body
    ]


def test_n_probs_reaches_llama_server(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(max_tokens=2, n_probs=2))
    assert response.status_code == 200, response.text
    tokens = response.json()["choices"][0]["logprobs"]["content"]
    assert len(tokens) == 2
    assert all(len(token["top_logprobs"]) == 2 for token in tokens)


def test_cache_prompt_false_reaches_llama_server(client: httpx.Client) -> None:
    body = chat_body(max_tokens=1, messages=[{"role": "user", "content": f"Repeat: {uuid.uuid4().hex}"}])
    warm = client.post("/v1/chat/completions", json=body)
    assert warm.status_code == 200, warm.text
    cached = client.post("/v1/chat/completions", json=body).json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    uncached = client.post("/v1/chat/completions", json={**body, "cache_prompt": False}).json()
    assert cached > 0  # the control: an identical prompt is normally served from the KV cache
    assert uncached["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_router_only_fields_are_not_forwarded_upstream(client: httpx.Client, tap: Wiretap) -> None:
    marker = uuid.uuid4().hex
    body = chat_body(model=TAPPED_ID, messages=[{"role": "user", "content": marker}], task_type="general", priority=3)
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    orchestrated = client.post("/v1/chat/completions", json={**body, **ROUTER_ONLY})
    assert orchestrated.status_code == 200, orchestrated.text
    upstream = _upstream_bodies(tap, marker)
    assert len(upstream) == 2
    for sent in upstream:
        assert not set(ROUTER_ONLY) & set(sent), sent


def test_unknown_fields_are_forwarded_verbatim(client: httpx.Client, tap: Wiretap) -> None:
    marker = uuid.uuid4().hex
    extras = {"n_probs": 1, "cache_prompt": False, "x_custom": {"nested": [1, 2]}}
    response = client.post(
        "/v1/chat/completions",
        json=chat_body(model=TAPPED_ID, messages=[{"role": "user", "content": marker}], **extras),
    )
    assert response.status_code == 200, response.text
    (sent,) = _upstream_bodies(tap, marker)
    assert {key: sent.get(key) for key in extras} == extras


def test_plain_request_reaches_the_runtime_as_the_same_json_with_its_model_name(
    client: httpx.Client, tap: Wiretap
) -> None:
    marker = uuid.uuid4().hex
    body = chat_body(
        model=TAPPED_ID, messages=[{"role": "user", "content": marker}], n_probs=1, x_custom={"deep": [1.5, None, "é"]}
    )
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    (sent,) = _upstream_bodies(tap, marker)
    assert sent == {**body, "model": SMOLLM2_ID}  # the tapped route's upstream_model


def test_plain_answer_carries_no_orchestration_object(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert response.status_code == 200, response.text
    assert "orchestration" not in response.json()


def test_plain_stream_carries_no_orchestration_object(router: ServiceProcess) -> None:
    stream = post_sse(router.url + "/v1/chat/completions", chat_body(max_tokens=2, stream=True))
    assert stream.status == 200 and stream.chunks
    assert not [chunk for chunk in stream.chunks if "orchestration" in chunk]
