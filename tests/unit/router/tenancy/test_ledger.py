"""The usage ledger on a real SQLite file: what it counts per key, model and hour, what a restart keeps,
and what an unusable database costs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference_service.router.database import Database
from inference_service.router.observability.metrics import Metrics
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.keys import Tenant
from inference_service.router.tenancy.ledger import Query, UsageLedger


@contextlib.asynccontextmanager
async def ledger_on(path: Path, metrics: Metrics | None = None) -> AsyncIterator[UsageLedger]:
    database = Database(path)
    ledger = UsageLedger(database, metrics or Metrics(), flush_interval_s=3600)
    try:
        yield ledger
    finally:
        await ledger.close()
        await database.close()


@contextlib.contextmanager
def acting_as(name: str):  # type: ignore[no-untyped-def]
    token = keys.act_as(Tenant(name, frozenset({"inference"})))
    try:
        yield
    finally:
        keys.release(token)


def record_calls(ledger: UsageLedger) -> None:
    """alice: two calls to m1 (one failed), one to m2; bob: one to m1."""
    with acting_as("alice"):
        with ledger.call("m1"):
            ledger.tokens("m1", 10, 5)
        with pytest.raises(RuntimeError), ledger.call("m1"):
            raise RuntimeError("the runtime died")
        with ledger.call("m2"):
            ledger.tokens("m2", 3, None)
    with acting_as("bob"), ledger.call("m1"):
        ledger.tokens("m1", 1, 1)


def by_row(rows: list[dict[str, object]]) -> dict[tuple[object, object], tuple[object, ...]]:
    return {
        (row["key"], row["model"]): (row["requests"], row["prompt_tokens"], row["completion_tokens"], row["errors"])
        for row in rows
    }


EXPECTED = {("alice", "m1"): (2, 10, 5, 1), ("alice", "m2"): (1, 3, 0, 0), ("bob", "m1"): (1, 1, 1, 0)}


async def test_calls_tokens_and_errors_count_per_key_and_model(tmp_path: Path) -> None:
    async with ledger_on(tmp_path / "usage.db") as ledger:
        record_calls(ledger)
        rows, complete = await ledger.query(Query())
    assert by_row(rows) == EXPECTED and complete


async def test_a_call_the_client_gave_up_on_is_no_error(tmp_path: Path) -> None:
    async with ledger_on(tmp_path / "usage.db") as ledger:
        with acting_as("alice"), pytest.raises(asyncio.CancelledError), ledger.call("m1"):
            raise asyncio.CancelledError  # the client left: its request's task is cancelled
        rows, _ = await ledger.query(Query())
    assert by_row(rows) == {("alice", "m1"): (1, 0, 0, 0)}


async def test_pending_and_written_rows_add_up(tmp_path: Path) -> None:
    async with ledger_on(tmp_path / "usage.db") as ledger:
        record_calls(ledger)
        await ledger.flush()
        record_calls(ledger)  # pending, not yet written
        rows, _ = await ledger.query(Query(key="alice"))
    assert by_row(rows) == {row: tuple(2 * n for n in counts) for row, counts in EXPECTED.items() if row[0] == "alice"}


async def test_usage_survives_a_restart(tmp_path: Path) -> None:
    async with ledger_on(tmp_path / "usage.db") as ledger:
        record_calls(ledger)  # written by close(), as at shutdown
    async with ledger_on(tmp_path / "usage.db") as restarted:
        rows, _ = await restarted.query(Query())
    assert by_row(rows) == EXPECTED


async def test_a_query_selects_by_hour(tmp_path: Path) -> None:
    async with ledger_on(tmp_path / "usage.db") as ledger:
        record_calls(ledger)
        rows, _ = await ledger.query(Query())
        hour = int(rows[0]["hour"])  # type: ignore[call-overload]
        assert hour % 3600 == 0
        assert (await ledger.query(Query(since=hour + 3600)))[0] == []
        assert (await ledger.query(Query(until=hour)))[0] == []
        assert len((await ledger.query(Query(since=hour, until=hour + 1)))[0]) == 3


async def test_an_unusable_database_drops_the_batch_counts_it_and_the_ledger_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    path.write_bytes(b"garbage" * 1000)
    metrics = Metrics()
    async with ledger_on(path, metrics) as ledger:
        record_calls(ledger)
        await ledger.flush()
        assert (
            metrics.registry.get_sample_value("inference_usage_lost_requests_total") == 4
        )  # the dropped batch's calls
        with acting_as("carol"), ledger.call("m1"):
            pass
        rows, complete = await ledger.query(Query())
    assert not complete and by_row(rows) == {("carol", "m1"): (1, 0, 0, 0)}


async def test_the_per_key_counters_follow_the_ledger(tmp_path: Path) -> None:
    metrics = Metrics()
    async with ledger_on(tmp_path / "usage.db", metrics) as ledger:
        record_calls(ledger)
    sample = metrics.registry.get_sample_value
    assert sample("inference_key_requests_total", {"key": "alice", "model": "m1"}) == 2
    assert sample("inference_key_tokens_total", {"key": "alice", "model": "m1", "kind": "prompt"}) == 10


async def test_flushing_on_a_timer(tmp_path: Path) -> None:
    database = Database(tmp_path / "usage.db")
    ledger = UsageLedger(database, Metrics(), flush_interval_s=0.01)
    await ledger.start()
    try:
        record_calls(ledger)
        for _ in range(500):
            written = await database.run(lambda connection: connection.execute("SELECT count(*) FROM usage").fetchone())
            if written == (3,):
                break
            await asyncio.sleep(0.01)
        assert written == (3,)
    finally:
        await ledger.close()
        await database.close()
