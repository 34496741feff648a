"""Ollama's native API through the router, with the real ``ollama`` Python library, against
real llama-server: the model list, running models, model details, chat and generate (plain
and streamed, JSON format, tools), Ollama's error shape and status codes, the endpoints it
refuses, and a stream's slot freed at once when its client hangs up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from inference_service.router.api.ollama.routes import MANAGEMENT
from tests.integration.router.conftest import TAPPED_ID, child_url
from tests.support.api import child_headers
from tests.support.configs import SMOLLM2_FILE, SMOLLM2_ID, wait_until
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "Say hi."}]
#: Short, deterministic answers: the point is the API, not the text.
SHORT = {"num_predict": 4, "temperature": 0, "seed": 7}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def client(router: ServiceProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=router.url, timeout=120) as ollama_client:
        yield ollama_client


def test_list_names_every_model_with_its_gguf_details(client: ollama.Client) -> None:
    listed = {model.model: model for model in client.list().models}
    smol = listed[f"{SMOLLM2_ID}:latest"]
    assert smol.details is not None and smol.size == SMOLLM2_FILE.stat().st_size
    assert (smol.details.family, smol.details.parameter_size, smol.details.quantization_level) == (
        "llama",
        "135M",
        "Q4_1",
    )
    tapped = listed[f"{TAPPED_ID}:latest"]  # a remote model: no file, no header to read
    assert tapped.details is not None and tapped.details.format == ""


def test_ps_lists_the_loaded_model_with_its_context_length(client: ollama.Client) -> None:
    running = {model.model: model for model in client.ps().models}
    assert running[f"{SMOLLM2_ID}:latest"].context_length == 2048


def test_show_gives_the_chat_template_header_metadata_and_capabilities(client: ollama.Client) -> None:
    shown = client.show("smol")
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.template and "im_start" in shown.template  # SmolLM2's ChatML template, from the GGUF


@pytest.mark.parametrize("name", ["smol", "smol:latest", SMOLLM2_ID, f"{SMOLLM2_ID}:latest"])
def test_ids_and_aliases_resolve_with_or_without_the_latest_tag(client: ollama.Client, name: str) -> None:
    reply = client.generate(model=name, prompt="Hi", options={"num_predict": 1})
    assert reply.done and reply.model == name


def test_chat_answers_with_an_assistant_message_and_ollamas_statistics(client: ollama.Client) -> None:
    reply = client.chat(model="smol", messages=HI, options=SHORT)
    assert reply.message.role == "assistant" and reply.message.content
    assert reply.done and reply.done_reason == "length"
    assert reply.eval_count == 4 and reply.prompt_eval_count and reply.prompt_eval_count > 0
    assert reply.total_duration and reply.eval_duration and reply.prompt_eval_duration
    parts = (reply.load_duration or 0) + reply.prompt_eval_duration + reply.eval_duration
    assert abs(reply.total_duration - parts) < 1_000_000  # they add up, to rounding


def test_a_streamed_chat_is_one_object_per_token_then_one_done_object(client: ollama.Client) -> None:
    parts = list(client.chat(model="smol", messages=HI, options=SHORT, stream=True))
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(part.message.content or "" for part in parts)
    assert parts[-1].eval_count == 4 and parts[-1].done_reason == "length"


def test_format_with_a_json_schema_constrains_the_answer(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    messages = [{"role": "user", "content": "Is the sky blue? Answer in JSON."}]
    reply = client.chat(model="smol", messages=messages, format=schema, options={"num_predict": 24, "temperature": 0})
    assert isinstance(json.loads(reply.message.content or "")["ok"], bool)


def test_format_json_reaches_llama_server_as_json_mode(client: ollama.Client, tap: Wiretap) -> None:
    marker = uuid.uuid4().hex
    messages = [{"role": "user", "content": f"JSON please {marker}"}]
    reply = client.chat(model=TAPPED_ID, messages=messages, format="json", options={"num_predict": 2})
    assert reply.done
    assert upstream_body(tap, marker)["response_format"] == {"type": "json_object"}


def test_tools_reach_the_model_and_the_answer_keeps_ollamas_shape(client: ollama.Client, tap: Wiretap) -> None:
    marker = uuid.uuid4().hex
    messages = [{"role": "user", "content": f"What is the weather in Oslo? {marker}"}]
    reply = client.chat(model=TAPPED_ID, messages=messages, tools=[WEATHER_TOOL], options=SHORT)
    assert reply.done and reply.message.role == "assistant"
    assert all(call.function.name == "get_weather" for call in reply.message.tool_calls or [])
    assert upstream_body(tap, marker)["tools"] == [WEATHER_TOOL]


def test_a_tool_result_in_the_history_is_sent_as_the_answer_to_its_call(client: ollama.Client, tap: Wiretap) -> None:
    marker = uuid.uuid4().hex
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": f"Weather in Oslo? {marker}"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "3 degrees", "tool_name": "get_weather"},
    ]
    reply = client.chat(model=TAPPED_ID, messages=messages, tools=[WEATHER_TOOL], options=SHORT)
    assert reply.done and reply.message.content
    sent = upstream_body(tap, marker)["messages"]
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]


def test_generate_answers_with_a_response_and_statistics(client: ollama.Client) -> None:
    reply = client.generate(model="smol", prompt="Hello", options=SHORT)
    assert reply.response and reply.done and reply.eval_count == 4


def test_a_streamed_generate_ends_with_one_done_object(client: ollama.Client) -> None:
    parts = list(client.generate(model="smol", prompt="Hello", options=SHORT, stream=True))
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(part.response or "" for part in parts)


def test_an_unknown_model_raises_the_librarys_response_error_with_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="no-such-model", messages=HI)
    assert raised.value.status_code == 404 and "no-such-model" in raised.value.error


def test_images_for_a_text_only_model_are_a_400_saying_so(client: ollama.Client) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="smol", messages=[{"role": "user", "content": "What is it?", "images": [png]}])
    assert raised.value.status_code == 400 and "image input is not supported" in raised.value.error


def test_a_field_of_the_wrong_type_is_a_400_in_ollamas_shape(router: ServiceProcess) -> None:
    response = httpx.post(
        router.url + "/api/chat", json={"model": "smol", "messages": HI, "stream": [True]}, timeout=60
    )
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and "stream" in response.json()["error"]


@pytest.mark.parametrize(("method", "path"), sorted(MANAGEMENT))
def test_model_management_is_refused_with_403_saying_where_models_come_from(
    router: ServiceProcess, method: str, path: str
) -> None:
    response = httpx.request(method, router.url + path.replace("{digest}", "sha256:00"), json={"model": "smol"})
    assert response.status_code == 403
    if method != "HEAD":
        assert "config" in response.json()["error"]


def test_the_root_says_ollama_is_running_and_the_version_answers(router: ServiceProcess) -> None:
    assert httpx.get(router.url + "/").text == "Ollama is running"
    assert httpx.head(router.url + "/").status_code == 200
    assert httpx.get(router.url + "/api/version").json()["version"]


def test_any_other_api_path_is_a_404_in_ollamas_shape(router: ServiceProcess) -> None:
    response = httpx.get(router.url + "/api/chat")  # a POST endpoint: Ollama answers other methods 404
    assert response.status_code == 404 and set(response.json()) == {"error"}


def test_chat_requests_are_counted_as_api_chat_with_their_tokens(router: ServiceProcess, client: ollama.Client) -> None:
    def counted() -> float:
        metrics = httpx.get(router.url + "/metrics").text
        return sample(metrics, "inference_requests_total", model=SMOLLM2_ID, endpoint="api/chat", status="200") or 0

    before = counted()
    list(client.chat(model="smol", messages=HI, options={"num_predict": 1}, stream=True))
    assert counted() == before + 1


def test_an_orchestrated_chat_answers_through_api_chat(router: ServiceProcess) -> None:
    body = {"model": "smol", "messages": HI, "options": SHORT, "orchestration_mode": "single"}
    response = httpx.post(router.url + "/api/chat", json=body, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    (line,) = response.text.splitlines()  # the answer once the final stage is done: one line
    answer = json.loads(line)
    assert answer["done"] and answer["message"]["content"]
    assert answer["orchestration"]["mode"] == "single"


def busy_slots(router: ServiceProcess) -> int:
    slots = httpx.get(child_url(router, SMOLLM2_ID) + "/slots", headers=child_headers(router, SMOLLM2_ID)).json()
    return sum(slot["is_processing"] for slot in slots)


def test_a_client_hanging_up_mid_stream_frees_the_llama_server_slot(router: ServiceProcess) -> None:
    wait_until(lambda: busy_slots(router) == 0, timeout_s=60)
    # Greedy, this prompt runs to the context's end (~1,000 tokens); "Say hi." at temperature 1 could
    # end by itself before the check below on a busy box (seen in a fresh-clone make test).
    story = [{"role": "user", "content": "Write a very long story about a dragon."}]
    body = {"model": "smol", "messages": story, "options": {"num_predict": 1000, "temperature": 0}}
    with httpx.stream("POST", router.url + "/api/chat", json=body, timeout=120) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines))["done"] is False  # generating
        assert busy_slots(router) == 1
    hung_up = time.monotonic()
    wait_until(lambda: busy_slots(router) == 0, timeout_s=30)
    assert time.monotonic() - hung_up < 30  # a 1000-token answer would take minutes here


def upstream_body(tap: Wiretap, marker: str) -> dict[str, Any]:
    """The one JSON body the router sent upstream through the tap that carries ``marker``."""
    (body,) = [json.loads(r.body) for r in tap.requests() if r.method == "POST" and marker.encode() in r.body]
    return body  # type: ignore[no-any-return]
