"""The usage ledger against real llama-servers: its totals are the requests made - plain, streamed
and orchestrated, per key and model - it survives a restart, and the API, the CLI and /metrics agree.

Two keys send a known mix; what the runtimes reported (each answer's ``usage``, a stream's usage
chunk, an orchestration's stages) is the expected ledger.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until, write_config
from tests.support.prometheus import sample
from tests.support.service import REPO_ROOT, ServiceProcess, running_service

pytestmark = pytest.mark.integration

KEYS = {
    "alice": {"key": "k-alice", "scopes": ["inference"]},
    "bob": {"key": "k-bob", "scopes": ["inference"]},
    "ops": {"key": "k-ops", "scopes": ["admin", "read"]},
}
SHORT = {"max_tokens": 3, "temperature": 0, "seed": 7}
HI = [{"role": "user", "content": "Say hi."}]


@dataclass
class Expected:
    """What the runtimes reported, per key: calls per model, and tokens."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, model: str, usage: dict[str, int]) -> None:
        self.calls[(key, model)] += 1
        self.tokens[key] += usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("usage")
    models = {
        SMOLLM2_ID: smollm2(preload=True, roles=["primary"], ctx_size=1024),
        GEMMA_ID: gemma(preload=True, roles=["critic"], ctx_size=1024),
    }
    return write_config(directory / "config.toml", models, keys=KEYS, usage_db=str(directory / "router.db"))


@pytest.fixture(scope="module")
def service(config: Path) -> Iterator[ServiceProcess]:
    with running_service(config, config.parent / "logs", wait_ready=True) as service:
        yield service


def client(service: ServiceProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer k-{key}"}, timeout=300)


def streamed_usage(response: httpx.Response) -> dict[str, int]:
    """The usage chunk of an OpenAI stream (``stream_options.include_usage``)."""
    chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    return next(chunk["usage"] for chunk in chunks if chunk.get("usage"))


@pytest.fixture(scope="module")
def traffic(service: ServiceProcess) -> Expected:
    """alice: two chats, a stream and a critique; bob: one completion on gemma."""
    expected = Expected()
    with client(service, "alice") as alice, client(service, "bob") as bob:
        for _ in range(2):
            answer = alice.post("/v1/chat/completions", json={"model": SMOLLM2_ID, "messages": HI, **SHORT})
            assert answer.status_code == 200, answer.text
            expected.add("alice", SMOLLM2_ID, answer.json()["usage"])
        stream_body = {"model": SMOLLM2_ID, "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
        with alice.stream("POST", "/v1/chat/completions", json={**stream_body, **SHORT}) as streamed:
            assert streamed.status_code == 200
            expected.add("alice", SMOLLM2_ID, streamed_usage(streamed))
        completion = bob.post("/v1/completions", json={"model": GEMMA_ID, "prompt": "Paris is", **SHORT})
        assert completion.status_code == 200, completion.text
        expected.add("bob", GEMMA_ID, completion.json()["usage"])
        critique = {"model": SMOLLM2_ID, "messages": HI, "orchestration_mode": "critique", **SHORT}
        orchestrated = alice.post("/v1/chat/completions", json=critique)
        assert orchestrated.status_code == 200, orchestrated.text
        for stage in orchestrated.json()["orchestration"]["stages"]:
            expected.add("alice", stage["model"], stage["usage"])
    return expected


def usage_as(service: ServiceProcess, caller: str, **query: str) -> httpx.Response:
    with client(service, caller) as http:
        return http.get("/v1/usage", params=query)


def ledger_of(payload: dict[str, Any]) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    calls: Counter[tuple[str, str]] = Counter()
    tokens: Counter[str] = Counter()
    for row in payload["data"]:
        calls[(row["key"], row["model"])] += row["requests"]
        tokens[row["key"]] += row["prompt_tokens"] + row["completion_tokens"]
    return calls, tokens


def test_the_ledger_holds_every_call_and_its_tokens_per_key_and_model(
    service: ServiceProcess, traffic: Expected
) -> None:
    payload = usage_as(service, "ops").json()
    assert payload["complete"]
    assert ledger_of(payload) == (traffic.calls, traffic.tokens)
    assert payload["totals"]["requests"] == sum(traffic.calls.values())
    assert all(row["errors"] == 0 and row["upstream_seconds"] > 0 for row in payload["data"])


def test_a_key_reads_its_own_usage_and_no_one_elses(service: ServiceProcess, traffic: Expected) -> None:
    own = usage_as(service, "bob").json()
    assert {row["key"] for row in own["data"]} == {"bob"}
    refused = usage_as(service, "bob", key="alice")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert "alice" not in refused.json()["error"]["message"]


def test_a_filter_by_model(service: ServiceProcess, traffic: Expected) -> None:
    rows = usage_as(service, "ops", model=GEMMA_ID).json()["data"]
    assert {row["model"] for row in rows} == {GEMMA_ID}
    assert sum(row["requests"] for row in rows) == sum(
        n for (_, model), n in traffic.calls.items() if model == GEMMA_ID
    )


def test_the_per_key_counters_in_metrics_agree(service: ServiceProcess, traffic: Expected) -> None:
    """The counters move with the ledger's batches (every 2 s): wait for the one holding the traffic."""

    def counted() -> dict[tuple[str, str], float | None]:
        with client(service, "ops") as ops:
            metrics = ops.get("/metrics").text
        return {row: sample(metrics, "inference_key_requests_total", key=row[0], model=row[1]) for row in traffic.calls}

    assert wait_until(lambda: counted() == dict(traffic.calls), timeout_s=30)


def run_cli(service: ServiceProcess, *args: str) -> str:
    command = [sys.executable, "-m", "inference_service", "usage", "--url", service.url, "--api-key", "k-ops", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_shows_the_same_usage_as_json_and_as_a_table(service: ServiceProcess, traffic: Expected) -> None:
    as_json = json.loads(run_cli(service, "--json"))
    assert ledger_of(as_json) == (traffic.calls, traffic.tokens)
    table = run_cli(service).splitlines()
    assert table[0].split()[:3] == ["KEY", "MODEL", "HOUR"]
    assert table[-1].split()[:2] == ["total", str(sum(traffic.calls.values()))]


def test_the_ledger_survives_a_restart(service: ServiceProcess, traffic: Expected, config: Path) -> None:
    before = usage_as(service, "ops").json()
    service.stop()  # SIGTERM: the ledger writes what is pending as the router stops
    with running_service(config, config.parent / "logs-restarted") as restarted:
        after = usage_as(restarted, "ops").json()
    assert after["data"] == before["data"] and after["complete"]
