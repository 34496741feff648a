"""Errors mapped to the router's envelope: runtime answers (client faults stay 4xx) and the
supervisor's refusals (one answer each, whichever endpoint met them)."""

from __future__ import annotations

import json

import pytest

from inference_service.router.serving.errors import (
    APIError,
    ApiFamily,
    api_family,
    map_supervisor_errors,
    not_found,
    upstream_error,
)
from inference_service.supervisor import InsufficientCapacity, ModelUnavailable, UnknownModel

LLAMA_IMAGE = "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"
LLAMA_EMBEDDINGS = "This server does not support embeddings. Start it with `--embeddings`"


@pytest.mark.parametrize(("status", "message"), [(500, LLAMA_IMAGE), (501, LLAMA_EMBEDDINGS)])
def test_a_refusal_of_what_was_asked_is_a_400_with_the_runtimes_message(status: int, message: str) -> None:
    error = upstream_error(status, {"error": {"code": status, "message": message, "type": "server_error"}})
    assert (error.status, error.type, error.message) == (400, "invalid_request_error", message)


def test_a_real_server_fault_stays_a_5xx() -> None:
    error = upstream_error(500, {"error": {"code": 500, "message": "failed to get embeddings", "type": "server_error"}})
    assert (error.status, error.type) == (500, "server_error")


def test_a_runtime_400_keeps_its_status_and_type() -> None:
    error = upstream_error(400, {"error": {"code": 400, "message": "bad temperature", "type": "invalid_request_error"}})
    assert (error.status, error.type) == (400, "invalid_request_error")


def test_an_envelope_quoting_a_lone_surrogate_renders_as_escaped_json() -> None:
    message = "The model '\udfff' does not exist"
    body = not_found(message).response().body
    assert body.isascii() and json.loads(body)["error"]["message"] == message


def supervisor_refusal(error: Exception) -> APIError:
    with pytest.raises(APIError) as raised, map_supervisor_errors():
        raise error
    return raised.value


def test_an_unknown_model_is_a_404_model_not_found() -> None:
    error = supervisor_refusal(UnknownModel("gone", ["a", "b"]))
    assert (error.status, error.type, error.code, error.param) == (404, "not_found_error", "model_not_found", "model")
    assert error.message == "model 'gone' does not exist; available: a, b"


def test_a_model_that_can_never_fit_is_a_507_insufficient_capacity() -> None:
    error = supervisor_refusal(InsufficientCapacity("cannot load 'big': max_loaded_models = 0"))
    assert (error.status, error.type, error.code) == (507, "insufficient_capacity", "insufficient_capacity")
    assert error.message == "cannot load 'big': max_loaded_models = 0"


def test_an_unavailable_model_is_a_503_model_unavailable_to_retry_later() -> None:
    error = supervisor_refusal(ModelUnavailable("model 'a' failed to load: exited with code 1"))
    assert (error.status, error.type, error.code) == (503, "model_unavailable", "model_unavailable")
    assert error.message == "model 'a' failed to load: exited with code 1"
    assert error.headers == {"Retry-After": "5"}


def test_an_error_the_supervisor_did_not_raise_passes_through_as_it_is() -> None:
    original = ValueError("not the supervisor's")
    with pytest.raises(ValueError) as raised, map_supervisor_errors():
        raise original
    assert raised.value is original


LLAMA_TOOLS = 'Failed to parse tools: Missing tool type: {"x":1}; tools = [{"x": 1}]'
LLAMA_RANGE = "vector::_M_range_check: __n (which is 18446744073709551615) >= this->size() (which is 49152)"
LLAMA_JSON_TYPE = "Failed to parse tools: [json.exception.type_error.302] type must be string, but is number"


@pytest.mark.parametrize("message", [LLAMA_TOOLS, LLAMA_RANGE, LLAMA_JSON_TYPE], ids=["tools", "range", "json-type"])
def test_a_runtime_500_for_malformed_input_is_a_400_invalid_value(message: str) -> None:
    error = upstream_error(500, {"error": {"code": 500, "message": message, "type": "server_error"}})
    assert (error.status, error.type, error.code) == (400, "invalid_request_error", "invalid_value")


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/chat/completions", ApiFamily.OPENAI),
        ("/v1/messages", ApiFamily.ANTHROPIC),
        ("/v1/messages/count_tokens", ApiFamily.ANTHROPIC),
        ("/v1/messagesx", ApiFamily.OPENAI),
        ("/api/chat", ApiFamily.OLLAMA),
        ("/apix", ApiFamily.OPENAI),
    ],
)
def test_a_path_belongs_to_the_api_whose_prefix_it_has(path: str, family: ApiFamily) -> None:
    assert api_family(path) is family


def test_an_error_on_the_messages_api_is_answered_in_anthropics_envelope() -> None:
    body = json.loads(APIError(401, "no key", "authentication_error").response_for("/v1/messages").body)
    assert body == {
        "type": "error",
        "error": {"message": "no key", "type": "authentication_error", "param": None, "code": None},
    }


def test_an_error_on_the_ollama_api_is_its_message_alone_and_a_422_becomes_ollamas_400() -> None:
    response = APIError(422, "'model' is a required property", param="model").response_for("/api/chat")
    assert (response.status_code, json.loads(response.body)) == (400, {"error": "'model' is a required property"})


def test_an_error_keeps_its_headers_in_every_envelope() -> None:
    error = APIError(429, "slow down", "rate_limit_error", headers={"Retry-After": "3"})
    assert {
        error.response_for(path).headers["retry-after"] for path in ("/v1/models", "/v1/messages", "/api/tags")
    } == {"3"}
