"""The router's database: real SQLite files - WAL, its own thread, and failures that never stop the caller."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from inference_service.router.database import Database, DatabaseUnavailable

SCHEMA = "CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY);"


@pytest.fixture
async def database(tmp_path: Path) -> Database:
    db = Database(tmp_path / "router.db")
    db.add_schema(SCHEMA)
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
    database.add_schema(SCHEMA)
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
