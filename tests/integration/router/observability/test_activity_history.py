"""The activity history against a real router and llama-server: each request to a model is a
record with its access line's fields, paged newest first, its key's own for a key without
admin; captures of the models and keys that opt in; and all of it after a restart.

SmolLM2 is captured (``capture = true``) with a small ``capture_max_bytes``, so a streamed
answer is cut; ``offline`` is a remote model whose host is down (requests fail at once, which
makes records cheap); the key ``bob`` is captured whatever model it calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import SMOLLM2_ID, smollm2, write_config
from tests.support.service import ServiceProcess, free_port, running_service

pytestmark = pytest.mark.integration

OFFLINE = "offline"
CAPTURE_MAX_BYTES = 400
KEYS = {
    "ops": {"key": "k-ops", "scopes": ["admin", "read", "inference"]},
    "alice": {"key": "k-alice", "scopes": ["read", "inference"]},
    "bob": {"key": "k-bob", "scopes": ["read", "inference"], "capture": True},
}
HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("activity")
    models = {
        SMOLLM2_ID: smollm2(preload=True, ctx_size=1024, capture=True),
        OFFLINE: {"runtime": "remote", "url": f"http://127.0.0.1:{free_port()}"},
    }
    return write_config(directory / "config.toml", models, keys=KEYS, capture_max_bytes=CAPTURE_MAX_BYTES)


@pytest.fixture(scope="module")
def service(config: Path) -> Iterator[ServiceProcess]:
    with running_service(config, config.parent / "logs", wait_ready=True) as service:
        yield service


def client(service: ServiceProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer k-{key}"}, timeout=120)


def chat(service: ServiceProcess, key: str, model: str = SMOLLM2_ID, **fields: Any) -> httpx.Response:
    with client(service, key) as http:
        return http.post("/v1/chat/completions", json={"model": model, "messages": HI, "max_tokens": 4, **fields})


def activity(service: ServiceProcess, key: str = "ops", **params: Any) -> dict[str, Any]:
    with client(service, key) as http:
        response = http.get("/v1/activity", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def record_of(service: ServiceProcess, request_id: str) -> dict[str, Any]:
    return next(record for record in activity(service, limit=500)["data"] if record["request_id"] == request_id)


def test_each_request_is_a_record_with_its_access_line_fields(service: ServiceProcess) -> None:
    answer = chat(service, "alice", temperature=0)
    assert answer.status_code == 200, answer.text
    record = record_of(service, answer.headers["x-request-id"])
    usage = answer.json()["usage"]
    assert {name: record[name] for name in ("key", "model", "endpoint", "status", "method", "path")} == {
        "key": "alice",
        "model": SMOLLM2_ID,
        "endpoint": "chat/completions",
        "status": 200,
        "method": "POST",
        "path": "/v1/chat/completions",
    }
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert record["duration_ms"] > 0 and record["id"] == int(record["time"] * 1_000_000)


def test_a_key_without_admin_sees_only_its_own_records(service: ServiceProcess) -> None:
    for key in ("alice", "bob"):
        assert chat(service, key, model=OFFLINE).status_code >= 500
    assert {record["key"] for record in activity(service, "alice", limit=500)["data"]} == {"alice"}
    assert {"alice", "bob"} <= {record["key"] for record in activity(service, "ops", limit=500)["data"]}


def test_pages_follow_before_and_stay_put_while_requests_arrive(service: ServiceProcess) -> None:
    sent = [chat(service, "ops", model=OFFLINE).headers["x-request-id"] for _ in range(5)]
    first = activity(service, model=OFFLINE, limit=2)
    for _ in range(2):  # newer records arrive between the pages
        chat(service, "ops", model=OFFLINE)
    pages = [first]
    while pages[-1]["has_more"]:
        pages.append(activity(service, model=OFFLINE, limit=2, before=pages[-1]["next_before"]))
    seen = [record["request_id"] for page in pages for record in page["data"]]
    assert seen[:5] == sent[::-1] and len(seen) == len(set(seen))
    assert all(len(page["data"]) == 2 for page in pages[:-1]) and pages[-1]["next_before"] is None


def test_filters_by_model_status_and_time(service: ServiceProcess) -> None:
    failed = chat(service, "ops", model=OFFLINE)
    request_id = failed.headers["x-request-id"]
    status_class = f"{failed.status_code // 100}xx"
    assert request_id in [r["request_id"] for r in activity(service, status=status_class, limit=500)["data"]]
    assert request_id in [r["request_id"] for r in activity(service, status=str(failed.status_code))["data"]]
    assert all(r["status"] == 200 for r in activity(service, status="200", limit=500)["data"])
    assert all(r["model"] == SMOLLM2_ID for r in activity(service, model=SMOLLM2_ID, limit=500)["data"])
    later = record_of(service, request_id)["time"] + 1
    assert request_id not in [r["request_id"] for r in activity(service, since=str(later), limit=500)["data"]]


@pytest.mark.parametrize(
    ("param", "value"),
    [("status", "abc"), ("status", "6xx"), ("limit", "0"), ("limit", "501"), ("before", "x"), ("since", "soon")],
)
def test_a_bad_parameter_is_a_400_naming_it(service: ServiceProcess, param: str, value: str) -> None:
    with client(service, "ops") as http:
        response = http.get("/v1/activity", params={param: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param) and value in error["message"]


def test_the_live_request_event_carries_the_record_id(service: ServiceProcess) -> None:
    with client(service, "ops") as http, http.stream("GET", "/v1/events", params={"types": "request"}) as events:
        request_id = chat(service, "ops", model=OFFLINE).headers["x-request-id"]
        published = (json.loads(line[5:]) for line in events.iter_lines() if line.startswith("data:"))
        event = next(event for event in published if event["request_id"] == request_id)
    assert event["activity_id"] == record_of(service, request_id)["id"]


def capture_of(service: ServiceProcess, record_id: int, key: str = "ops") -> httpx.Response:
    with client(service, key) as http:
        return http.get(f"/v1/activity/{record_id}/capture")


def test_a_captured_models_stream_is_kept_as_the_raw_sse_up_to_capture_max_bytes(service: ServiceProcess) -> None:
    body = {"model": SMOLLM2_ID, "messages": HI, "max_tokens": 24, "stream": True, "temperature": 0}
    with client(service, "alice") as http, http.stream("POST", "/v1/chat/completions", json=body) as streamed:
        sent = b"".join(streamed.iter_raw())
        request_id = streamed.headers["x-request-id"]
    assert len(sent) > CAPTURE_MAX_BYTES
    record = record_of(service, request_id)
    captured = capture_of(service, record["id"]).json()
    assert record["captured"] and json.loads(captured["request"]["body"]) == body
    assert captured["request"]["truncated"] is False
    assert captured["response"] == {
        "body": sent[:CAPTURE_MAX_BYTES].decode(errors="replace"),
        "bytes": len(sent),
        "truncated": True,
    }


def test_a_captured_key_is_captured_on_any_model_and_no_other_key_there(service: ServiceProcess) -> None:
    by_bob = record_of(service, chat(service, "bob", model=OFFLINE).headers["x-request-id"])
    by_alice = record_of(service, chat(service, "alice", model=OFFLINE).headers["x-request-id"])
    assert by_bob["captured"] and capture_of(service, by_bob["id"]).status_code == 200
    assert not by_alice["captured"] and capture_of(service, by_alice["id"]).status_code == 404


def test_the_history_and_its_captures_survive_a_restart(service: ServiceProcess, config: Path) -> None:
    """Last in the module: it stops the module's router (SIGTERM: the pending batch is written first)."""
    before = activity(service, limit=500)["data"]
    captures = {record["id"]: capture_of(service, record["id"]).json() for record in before if record["captured"]}
    last_request = chat(service, "bob", model=OFFLINE).headers["x-request-id"]  # captured; not read before the stop
    service.stop()
    with running_service(config, config.parent / "logs-restarted") as restarted:
        after = activity(restarted, limit=500)
        assert after["complete"] and after["data"][1:] == before
        assert after["data"][0]["request_id"] == last_request and after["data"][0]["captured"]
        assert {record_id: capture_of(restarted, record_id).json() for record_id in captures} == captures
        assert capture_of(restarted, after["data"][0]["id"]).status_code == 200
