"""What a metered request costs its key's token bucket at the door (RequestContextMiddleware and the gate):
its body's size when it reaches a model - chunked or declared - and nothing when it never does (a 413, a
404, a 400, a 403) or when its method is not the route's (a 405).

The app runs in process with a ``remote`` model whose host (tests/support/recording_host.py) answers
without ``usage``, so a call that reached it keeps the estimate its body was charged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inference_service.config import Settings
from inference_service.router.app import create_app
from inference_service.runtimes.factory import runtime_factory
from tests.support.recording_host import RecordingHost, recording_host

TOKENS_PER_MINUTE = 1000
#: A body estimated at the whole bucket (4 bytes a token): after it, another one waits a minute.
PROMPT = "x" * (TOKENS_PER_MINUTE * 4 - 60)
KEY = {"Authorization": "Bearer b-secret"}


@pytest.fixture(scope="module")
def host() -> Iterator[RecordingHost]:
    with recording_host() as recorder:
        yield recorder


@pytest.fixture
def client(tmp_path: Path, host: RecordingHost) -> Iterator[TestClient]:
    """A router per test, so the key's buckets start full."""
    settings = Settings(
        usage_db=tmp_path / "usage.db",
        models={"remote1": {"runtime": "remote", "url": host.url}, "other": {"path": str(tmp_path / "other.gguf")}},
        keys={
            "batch": {
                "key": "b-secret",
                "scopes": ["inference"],
                "models": ["remote1"],
                "tokens_per_minute": TOKENS_PER_MINUTE,
                "requests_per_minute": 60,
            }
        },
    )
    with TestClient(create_app(settings, runtime_factory(settings, None)), headers=KEY) as test_client:
        yield test_client


def body(model: str) -> bytes:
    return b'{"model": "%s", "messages": [{"role": "user", "content": "%s"}]}' % (model.encode(), PROMPT.encode())


def bucket(client: TestClient) -> dict[str, str]:
    """The key's buckets as an unmetered request (``GET /v1/key``) shows them."""
    headers = client.get("/v1/key").headers
    return {kind: headers[f"x-ratelimit-remaining-{kind}"] for kind in ("requests", "tokens")}


def test_a_declared_length_over_max_body_bytes_is_a_413_that_costs_nothing(client: TestClient) -> None:
    headers = {"content-type": "application/json", "content-length": "1000000000000"}
    answered = client.post("/v1/chat/completions", content=b"{}", headers=headers)
    assert answered.status_code == 413 and answered.json()["error"]["code"] == "request_too_large"
    assert bucket(client) == {"requests": "60", "tokens": str(TOKENS_PER_MINUTE)}


@pytest.mark.parametrize(
    ("model", "content", "status"),
    [
        ("no-such-model", None, 404),
        ("other", None, 403),  # a model outside the key's models
        ("remote1", b'{"model": "remote1", "messages": "%s"}' % PROMPT.encode(), 422),
    ],
    ids=["unknown-model", "model-not-allowed", "invalid-body"],
)
def test_a_request_that_reaches_no_model_gives_its_estimate_back(
    client: TestClient, model: str, content: bytes | None, status: int
) -> None:
    answered = client.post("/v1/chat/completions", content=content or body(model))
    assert answered.status_code == status, answered.text
    assert bucket(client)["tokens"] == str(TOKENS_PER_MINUTE)


def test_a_method_the_route_does_not_answer_is_not_metered(client: TestClient) -> None:
    assert client.get("/v1/chat/completions").status_code == 405
    assert bucket(client)["requests"] == "60"


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_body_that_reached_a_model_is_charged_its_size(client: TestClient, chunked: bool) -> None:
    content = body("remote1")
    answered = client.post("/v1/chat/completions", content=iter([content]) if chunked else content)
    assert answered.status_code == 200, answered.text
    refused = client.post("/v1/chat/completions", content=content)
    assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]
