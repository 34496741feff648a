"""A config reload that changes ``replicas`` adds or drains replicas; the running ones keep their process."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.replicas.conftest import StartService
from tests.support.configs import smollm2, wait_until, write_config


def reload(url: str, config: Path, replicas: int) -> dict[str, object]:
    write_config(config, {"smol": smollm2(replicas=replicas, parallel=1, preload=True)})
    answer = httpx.post(f"{url}/admin/reload", timeout=600).json()
    assert answer["ok"] is True, answer
    return dict(answer)


def pids(client: httpx.Client) -> list[int | None]:
    return [replica["pid"] for replica in client.get("/v1/models/smol").json().get("replicas", [])]


def test_a_reload_adds_and_drains_replicas_without_touching_the_others(
    start_service: StartService, tmp_path: Path
) -> None:
    service = start_service({"smol": smollm2(replicas=2, parallel=1, preload=True)})
    with httpx.Client(base_url=service.url, timeout=120) as client:
        first, second = pids(client)
        assert reload(service.url, tmp_path / "config.toml", 3)["updated"] == ["smol"]
        grown = pids(client)
        assert grown[:2] == [first, second] and grown[2] not in (None, first, second)
        assert [r["status"] for r in client.get("/v1/models/smol").json()["replicas"]] == ["loaded"] * 3

        reload(service.url, tmp_path / "config.toml", 2)
        assert pids(client) == [first, second]
        # The removed replica is retired in the background (drained, then stopped): its process goes.
        wait_until(lambda: grown[2] not in {child.pid for child in service.children()}, timeout_s=120)
