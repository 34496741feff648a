"""The router's database: real SQLite files - WAL, its own thread, and failures that never stop the caller."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from inference_service.router.database import Database, DatabaseUnavailable
from inference_service.router.tenancy import ledger

SCHEMA = "CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY);"


@pytest.fixture
async def database(tmp_path: Path) -> Database:
    db = Database(tmp_path / "router.db")
    db.add_schema("things", [SCHEMA])
    yield db  # type: ignore[misc]
    await db.close()


async def test_work_runs_off_the_event_loop_in_one_transaction(database: Database) -> None:
    def insert(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO things VALUES ('a')")
        return threading.current_thread().name

    assert (await database.run(insert)).startswith("database")
    assert await database.run(lambda connection: connection.execute("SELECT name FROM things").fetchall()) == [("a",)]


async def test_a_failing_transaction_is_rolled_back(database: Database) -> None:
    def insert_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO things VALUES ('b')")
        connection.execute("INSERT INTO things VALUES ('b')")  # the primary key: IntegrityError

    with pytest.raises(DatabaseUnavailable):
        await database.run(insert_then_fail)
    assert await database.run(lambda connection: connection.execute("SELECT count(*) FROM things").fetchone()) == (0,)


async def test_the_journal_is_wal(database: Database) -> None:
    assert await database.run(lambda connection: connection.execute("PRAGMA journal_mode").fetchone()) == ("wal",)


async def test_a_corrupt_file_is_unavailable_with_one_log_line_and_a_repaired_one_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "router.db"
    path.write_bytes(b"this is not a database" * 100)
    database = Database(path)
    database.add_schema("things", [SCHEMA])
    try:
        with caplog.at_level(logging.ERROR, logger="inference_service.router.database"):
            for _ in range(3):
                with pytest.raises(DatabaseUnavailable):
                    await database.run(lambda connection: connection.execute("SELECT 1").fetchone())
        lines = [record.getMessage() for record in caplog.records]
        assert len(lines) == 1 and str(path) in lines[0] and "serving continues" in lines[0]
        path.unlink()
        assert await database.run(lambda connection: connection.execute("SELECT count(*) FROM things").fetchone()) == (
            0,
        )
    finally:
        await database.close()


async def test_a_path_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    database = Database(blocker / "router.db")
    try:
        with pytest.raises(DatabaseUnavailable):
            await database.run(lambda connection: connection.execute("SELECT 1").fetchone())
    finally:
        await database.close()


def columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


async def test_each_migration_runs_once_in_order_and_keeps_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "router.db"
    first = Database(path)
    first.add_schema("things", [SCHEMA])
    await first.run(lambda connection: connection.execute("INSERT INTO things VALUES ('kept')"))
    await first.close()
    migrations = [SCHEMA, "ALTER TABLE things ADD COLUMN size INTEGER"]  # run twice, the ALTER would fail
    for _ in range(2):
        upgraded = Database(path)
        upgraded.add_schema("things", migrations)
        try:
            assert await upgraded.run(lambda connection: columns(connection, "things")) == ["name", "size"]
            assert await upgraded.run(lambda connection: connection.execute("SELECT name FROM things").fetchall()) == [
                ("kept",)
            ]
        finally:
            await upgraded.close()


async def test_a_file_from_before_schema_versions_keeps_its_tables_and_gains_the_new_ones(tmp_path: Path) -> None:
    """The usage.db main wrote before versions were recorded: its DDL run as is, no schema_versions table."""
    path = tmp_path / "usage.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.execute("PRAGMA journal_mode=WAL")
        old.executescript(ledger.SCHEMA)
        old.execute("INSERT INTO usage (key, model, hour, requests) VALUES ('alice', 'm1', 0, 3)")
        old.commit()
    database = Database(path)
    database.add_schema("usage", [ledger.SCHEMA])
    database.add_schema("things", [SCHEMA])
    try:
        assert await database.run(
            lambda connection: connection.execute("SELECT key, requests FROM usage").fetchall()
        ) == [("alice", 3)]
        assert await database.run(lambda connection: connection.execute("SELECT count(*) FROM things").fetchone()) == (
            0,
        )
        versions = await database.run(lambda connection: connection.execute("SELECT * FROM schema_versions").fetchall())
        assert sorted(versions) == [("things", 1), ("usage", 1)]
    finally:
        await database.close()


async def test_a_file_from_a_newer_router_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "router.db"
    newer = Database(path)
    newer.add_schema("things", [SCHEMA, "ALTER TABLE things ADD COLUMN size INTEGER"])
    await newer.run(lambda connection: connection.execute("SELECT 1").fetchone())
    await newer.close()
    older = Database(path)
    older.add_schema("things", [SCHEMA])
    try:
        with pytest.raises(DatabaseUnavailable, match="things tables are at version 2, written by a newer"):
            await older.run(lambda connection: connection.execute("SELECT 1").fetchone())
    finally:
        await older.close()
