"""The activity history on a real SQLite file: pages that stay put while requests arrive, filters,
retention, captures kept within their bound, and what an unusable database costs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from inference_service.config import Settings
from inference_service.router.database import Database
from inference_service.router.observability.history import DAY_S, ActivityHistory, Body, Capture, Query
from inference_service.router.observability.metrics import Metrics

REMOTE = {"runtime": "remote", "url": "http://127.0.0.1:9"}


def settings(**values: Any) -> Settings:
    return Settings(models={"m1": REMOTE, "m2": REMOTE}, **values)


@contextlib.asynccontextmanager
async def history_on(
    path: Path, config: Settings | None = None, metrics: Metrics | None = None
) -> AsyncIterator[ActivityHistory]:
    database = Database(path)
    history = ActivityHistory(
        database, (metrics or Metrics()).activity_lost, config or settings(), flush_interval_s=3600
    )
    try:
        yield history
    finally:
        await history.close()
        await database.close()


def summary(model: str = "m1", status: int = 200, key: str | None = "alice", **fields: Any) -> dict[str, Any]:
    return {"request_id": f"r-{model}-{status}", "key": key, "model": model, "status": status, **fields}


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [record["id"] for record in records]


async def test_records_come_back_newest_first_and_a_page_stays_put_while_requests_arrive(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db") as history:
        now = time.time()
        first = [history.add(summary(), now, None).record_id for _ in range(5)]
        page = await history.query(Query(limit=2))
        assert ids(page.records) == first[:-3:-1] and page.has_more and page.complete
        later = [history.add(summary(), now, None).record_id for _ in range(3)]  # newer records arrive between pages
        second = await history.query(Query(before=page.records[-1]["id"], limit=2))
        third = await history.query(Query(before=second.records[-1]["id"], limit=2))
        assert ids(second.records) + ids(third.records) == first[2::-1] and not third.has_more
        assert ids((await history.query(Query(limit=3))).records) == later[::-1]


async def test_ids_are_the_end_times_in_microseconds_unique_even_within_one(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db") as history:
        same_moment = [history.add(summary(), 1_800_000_000.0, None).record_id for _ in range(3)]
    assert same_moment == [1_800_000_000_000_000, 1_800_000_000_000_001, 1_800_000_000_000_002]


async def test_filters_by_model_status_key_and_time(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db") as history:
        now = time.time()
        old = history.add(summary("m1", 200), now - 3600, None).record_id
        ok = history.add(summary("m1", 200), now, None).record_id
        missing = history.add(summary("m2", 404, key="bob"), now, None).record_id
        broken = history.add(summary("m2", 502), now, None).record_id
        selected = {
            "m2": Query(model="m2"),
            "4xx": Query(status_from=400, status_to=499),
            "502": Query(status_from=502, status_to=502),
            "bob": Query(key="bob"),
            "recent": Query(since=int((now - 60) * 1_000_000)),
        }
        found = {name: ids((await history.query(query)).records) for name, query in selected.items()}
    assert found == {
        "m2": [broken, missing],
        "4xx": [missing],
        "502": [broken],
        "bob": [missing],
        "recent": [broken, missing, ok],
    }
    assert old not in found["recent"]


async def test_records_and_captures_survive_a_reopen(tmp_path: Path) -> None:
    capture = Capture(limit=100)
    capture.request.add(b'{"prompt": "hi"}')
    capture.response.add(b'{"text": "hello"}')
    async with history_on(tmp_path / "router.db") as history:
        captured = history.add(summary(ttft_ms=12.5), time.time(), capture).record_id
        plain = history.add(summary(), time.time(), None).record_id
    async with history_on(tmp_path / "router.db") as reopened:
        records = (await reopened.query(Query())).records
        assert [(record["id"], record["captured"], record["status"]) for record in records] == [
            (plain, False, 200),
            (captured, True, 200),
        ]
        assert records[1]["ttft_ms"] == 12.5 and records[1]["time"] == pytest.approx(captured / 1e6)
        assert await reopened.capture(captured) == {
            "request": {"body": '{"prompt": "hi"}', "bytes": 16, "truncated": False},
            "response": {"body": '{"text": "hello"}', "bytes": 17, "truncated": False},
        }
        assert await reopened.capture(plain) is None


def test_a_body_is_kept_up_to_its_limit_and_its_whole_size_counted() -> None:
    body = Body(limit=10)
    for chunk in (b"data: 1234\n", b"data: 5678\n", b""):
        body.add(chunk)
    assert (bytes(body.kept), body.size) == (b"data: 1234", 22)


async def test_a_zero_limit_keeps_no_bytes_but_the_size(tmp_path: Path) -> None:
    capture = Capture(limit=0)
    capture.request.add(b"secret prompt")
    async with history_on(tmp_path / "router.db") as history:
        record = history.add(summary(), time.time(), capture).record_id
        captured = await history.capture(record)
        assert captured is not None and captured["request"] == {"body": "", "bytes": 13, "truncated": True}


async def test_pruning_drops_records_and_captures_past_the_retention(tmp_path: Path) -> None:
    capture = Capture(limit=100)
    capture.request.add(b"old prompt")
    async with history_on(tmp_path / "router.db", settings(activity_retention_days=1)) as history:
        now = time.time()
        expired = history.add(summary(), now - 1.5 * DAY_S, capture).record_id
        kept = history.add(summary(), now - 0.5 * DAY_S, None).record_id
        await history.flush()
        await history.prune()
        assert ids((await history.query(Query())).records) == [kept]
        assert await history.capture(expired) is None


async def test_a_shorter_retention_from_a_reload_prunes(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db", settings(activity_retention_days=7)) as history:
        history.add(summary(), time.time() - 2 * DAY_S, None)
        await history.flush()
        await history.prune()
        assert len((await history.query(Query())).records) == 1
        history.configure(settings(activity_retention_days=1))
        await history.prune()
        assert (await history.query(Query())).records == []


async def test_capture_is_off_unless_a_model_or_key_asks_for_it(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db") as history:
        assert not history.capturing
        keyed = {"k": {"key": "secret", "scopes": ["inference"], "capture": True}}
        history.configure(Settings(models={"m1": {**REMOTE, "capture": True}, "m2": REMOTE}, keys=keyed))
        assert history.capturing
        assert history.wants_capture("m1", None) and history.wants_capture("m2", "k")
        assert not history.wants_capture("m2", None)


async def test_an_unusable_database_counts_the_lost_records_and_answers_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "router.db"
    path.write_bytes(b"not a database" * 100)
    metrics = Metrics()
    async with history_on(path, metrics=metrics) as history:
        for _ in range(3):
            history.add(summary(), time.time(), None)
        page = await history.query(Query())
        assert (page.records, page.complete) == ([], False)
        assert metrics.registry.get_sample_value("inference_activity_lost_records_total") == 3
