"""Every Ollama option and field the router maps reaches llama-server as the field it becomes
(read on the wire, through the wiretap in front of the ``smollm2-tapped`` route), and every one
it cannot honour is refused with a 400 naming it - before anything goes upstream."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inference_service.router.api.ollama.requests import LOAD_TIME_OPTIONS, SAMPLING_OPTIONS, UNSUPPORTED_OPTIONS
from tests.integration.router.conftest import TAPPED_ID
from tests.support.service import ServiceProcess
from tests.support.wiretap import RecordedRequest, Wiretap

pytestmark = pytest.mark.integration

#: A value for each mapped option that llama-server accepts.
VALUES: dict[str, Any] = {
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 20,
    "min_p": 0.05,
    "typical_p": 0.95,
    "seed": 42,
    "stop": ["\n\n"],
    "repeat_penalty": 1.1,
    "repeat_last_n": 32,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.1,
    "mirostat": 2,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "num_keep": 4,
}


@pytest.fixture(scope="module")
def http(router: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router.url, timeout=120) as client:
        yield client


def sent_upstream(tap: Wiretap, marker: str) -> list[RecordedRequest]:
    return [request for request in tap.requests() if request.method == "POST" and marker.encode() in request.body]


def ask(http: httpx.Client, path: str, **fields: Any) -> tuple[httpx.Response, str]:
    """A non-streamed request to the tapped route, carrying a fresh marker in its text."""
    marker = uuid.uuid4().hex
    text = (
        {"prompt": f"Say {marker}"} if path == "/api/generate" else {"messages": [{"role": "user", "content": marker}]}
    )
    return http.post(path, json={"model": TAPPED_ID, "stream": False, **text, **fields}), marker


def test_the_mapped_option_table_is_the_one_tested() -> None:
    assert set(VALUES) == set(SAMPLING_OPTIONS)


def test_every_mapped_option_reaches_llama_server_as_its_field(http: httpx.Client, tap: Wiretap) -> None:
    response, marker = ask(http, "/api/chat", options={**VALUES, "num_predict": 2, "num_ctx": 4096})
    assert response.status_code == 200, response.text
    (request,) = sent_upstream(tap, marker)
    body = json.loads(request.body)
    assert {SAMPLING_OPTIONS[name]: body.get(SAMPLING_OPTIONS[name]) for name in VALUES} == {
        SAMPLING_OPTIONS[name]: value for name, value in VALUES.items()
    }
    assert body["max_tokens"] == 2
    assert "num_ctx" not in body and "options" not in body and "keep_alive" not in body


def test_think_reaches_llama_server_as_the_templates_switch_and_reasoning_effort(
    http: httpx.Client, tap: Wiretap
) -> None:
    response, marker = ask(http, "/api/chat", think=False, options={"num_predict": 1})
    assert response.status_code == 200, response.text
    body = json.loads(sent_upstream(tap, marker)[0].body)
    assert body["reasoning_effort"] == "none" and body["chat_template_kwargs"] == {"enable_thinking": False}


def test_raw_generate_completes_the_prompt_with_llama_cpps_json_schema_for_format(
    http: httpx.Client, tap: Wiretap
) -> None:
    response, marker = ask(http, "/api/generate", raw=True, format="json", options={"num_predict": 4})
    assert response.status_code == 200, response.text
    (request,) = sent_upstream(tap, marker)
    assert request.path == "/v1/completions"
    assert json.loads(request.body)["json_schema"] == {}
    assert response.json()["response"].lstrip().startswith("{")


def test_generate_applies_the_chat_template_with_the_system_prompt(http: httpx.Client, tap: Wiretap) -> None:
    response, marker = ask(http, "/api/generate", system="Be brief.", options={"num_predict": 1})
    assert response.status_code == 200, response.text
    (request,) = sent_upstream(tap, marker)
    assert request.path == "/v1/chat/completions"
    assert [m["role"] for m in json.loads(request.body)["messages"]] == ["system", "user"]


def test_a_suffix_goes_to_infill_and_a_model_without_fill_in_the_middle_tokens_says_so(
    http: httpx.Client, tap: Wiretap
) -> None:
    response, marker = ask(http, "/api/generate", suffix="    return x", options={"num_predict": 2})
    assert response.status_code == 400
    assert "Infill is not supported by this model" in response.json()["error"]  # llama-server's own verdict
    (request,) = sent_upstream(tap, marker)
    assert request.path == "/infill" and json.loads(request.body)["input_suffix"] == "    return x"


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        *((name, "load-time setting") for name in sorted(LOAD_TIME_OPTIONS)),
        *((name, "not supported") for name in sorted(UNSUPPORTED_OPTIONS)),
        ("no_such_option", "unknown option"),
    ],
)
def test_an_option_that_cannot_be_honoured_is_refused_by_name_before_going_upstream(
    http: httpx.Client, tap: Wiretap, option: str, reason: str
) -> None:
    response, marker = ask(http, "/api/chat", options={option: 1})
    assert response.status_code == 400
    assert option in response.json()["error"] and reason in response.json()["error"]
    assert sent_upstream(tap, marker) == []


@pytest.mark.parametrize(
    ("path", "fields", "refused"),
    [
        ("/api/generate", {"template": "{{ .Prompt }}"}, "templates are not supported"),
        ("/api/generate", {"context": [1, 2, 3]}, "'context' is not supported"),
        ("/api/generate", {"raw": True, "system": "x"}, "'system' needs the chat template"),
        ("/api/chat", {"logprobs": True}, "logprobs are not supported"),
        ("/api/chat", {"keep_alive": "soon"}, "not a duration"),
        ("/api/chat", {"not_an_ollama_field": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_field_that_cannot_be_honoured_is_refused_clearly(
    http: httpx.Client, tap: Wiretap, path: str, fields: dict[str, Any], refused: str
) -> None:
    response, marker = ask(http, path, **fields)
    assert response.status_code == 400 and refused in response.json()["error"]
    assert sent_upstream(tap, marker) == []
