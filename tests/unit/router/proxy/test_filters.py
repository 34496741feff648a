"""A model's request filters on the body that goes upstream: each rule, under each API's own field names."""

from __future__ import annotations

from typing import Any

import pytest

from inference_service.config import RequestFilters
from inference_service.router.proxy.filters import FIELD_NAMES, apply_filters
from inference_service.router.proxy.model_support import CAPABILITY_FOR_PATH

CHAT = "/v1/chat/completions"
FILTERS = RequestFilters(defaults={"temperature": 0.6}, overrides={"max_tokens": 2048}, strip=["top_k", "logit_bias"])


def filtered(path: str, body: dict[str, Any], filters: RequestFilters = FILTERS) -> tuple[dict[str, Any], list[str]]:
    copy = dict(body)
    changes = apply_filters(filters, path, copy)
    return copy, changes.describe()


def test_a_default_fills_a_field_the_request_left_out() -> None:
    body, changes = filtered(CHAT, {"messages": [], "max_tokens": 8})
    assert body["temperature"] == 0.6
    assert "temperature=0.6" in changes


@pytest.mark.parametrize("value", [0.0, 1.2])
def test_a_default_leaves_the_clients_own_value(value: float) -> None:
    body, changes = filtered(CHAT, {"temperature": value, "max_tokens": 8})
    assert body["temperature"] == value
    assert changes == []


def test_a_default_fills_a_field_sent_as_null() -> None:
    body, _ = filtered(CHAT, {"temperature": None, "max_tokens": 8})
    assert body["temperature"] == 0.6


def test_the_cap_lowers_a_larger_request_and_keeps_a_smaller_one() -> None:
    assert filtered(CHAT, {"max_tokens": 5000, "temperature": 0})[0]["max_tokens"] == 2048
    assert filtered(CHAT, {"max_tokens": 16, "temperature": 0}) == ({"max_tokens": 16, "temperature": 0}, [])


def test_the_cap_is_set_when_the_request_has_no_limit() -> None:
    body, changes = filtered(CHAT, {"temperature": 0})
    assert body["max_tokens"] == 2048
    assert changes == ["max_tokens=2048"]


def test_the_cap_bounds_every_token_field_a_chat_request_sends() -> None:
    body, _ = filtered(CHAT, {"max_completion_tokens": 9000, "temperature": 0})
    assert body == {"max_completion_tokens": 2048, "temperature": 0}  # not a second, conflicting field


def test_an_override_that_is_not_the_cap_always_wins() -> None:
    filters = RequestFilters(overrides={"seed": 7})
    assert filtered(CHAT, {"seed": 1}, filters) == ({"seed": 7}, ["seed=7"])
    assert filtered(CHAT, {"seed": 7}, filters) == ({"seed": 7}, [])
    assert filtered(CHAT, {"seed": True}, RequestFilters(overrides={"seed": 1}))[0] == {"seed": 1}  # true is not 1


def test_stripped_fields_are_removed_and_named() -> None:
    body, changes = filtered(CHAT, {"top_k": 40, "logit_bias": {"1": 5}, "temperature": 0, "max_tokens": 8})
    assert body == {"temperature": 0, "max_tokens": 8}
    assert changes == ["-top_k", "-logit_bias"]


@pytest.mark.parametrize("path", list(FIELD_NAMES))
def test_llama_servers_own_n_predict_cannot_step_round_the_cap(path: str) -> None:
    body, _ = filtered(path, {"n_predict": 100000, "temperature": 0})
    assert body["n_predict"] == 2048


def test_a_responses_request_is_capped_by_its_own_field() -> None:
    body, changes = filtered("/v1/responses", {"input": "hi", "max_output_tokens": 4096})
    assert body == {"input": "hi", "max_output_tokens": 2048, "temperature": 0.6}
    assert "max_tokens" not in body
    assert changes == ["temperature=0.6", "max_output_tokens=2048"]


def test_an_anthropic_request_keeps_its_names_and_gets_stop_sequences() -> None:
    filters = RequestFilters(defaults={"stop": "\n\n"}, overrides={"max_tokens": 64})
    body, _ = filtered("/v1/messages", {"messages": [], "max_tokens": 1024}, filters)
    assert body == {"messages": [], "max_tokens": 64, "stop_sequences": "\n\n"}


def test_llama_servers_until_done_n_predict_is_capped_on_infill() -> None:
    body, _ = filtered("/infill", {"input_prefix": "def", "n_predict": -1})
    assert body["n_predict"] == 2048


@pytest.mark.parametrize("path", ["/v1/embeddings", "/tokenize", "/v1/messages/count_tokens", "/v1/rerank"])
def test_paths_that_generate_nothing_are_not_filtered(path: str) -> None:
    body = {"input": "hi", "top_k": 3}
    assert filtered(path, body) == (body, [])


def test_every_generation_path_the_router_proxies_is_covered() -> None:
    generating = {path for path, capability in CAPABILITY_FOR_PATH.items() if capability in ("chat", "completion")}
    assert generating - {"/v1/messages/count_tokens", "/apply-template"} == set(FIELD_NAMES)
