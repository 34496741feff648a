"""The router's SQLite database: one file, one connection, one thread - the only code that opens it.

Whatever the router keeps across restarts lives here (the usage ledger's table, the activity
history's), so that there is one owner of the file, of its connection and of how failures are
handled. Each owner of tables registers them as numbered migrations (:meth:`Database.add_schema`);
the file records how far each owner's tables are (table ``schema_versions``), so a file written
by an older router is brought up to date when it is opened, and one written by a newer router is
refused rather than misread. ``sqlite3`` blocks, so every statement runs on the database's own
thread, never on the event loop; callers hand over a function of the connection
(:meth:`Database.run`), which runs as one transaction, and keep what they write in batches
(:class:`BatchWriter`). The journal is WAL: readers do not block the writer.

A database that cannot be opened or written - a corrupt file, a read-only directory, a full
disk - never stops the router. The failure is logged once (one line saying what is lost) and
raised to the caller as :class:`DatabaseUnavailable`, so it can count what it could not keep;
each later call tries again (a repaired file is picked up without a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: How long a statement waits for another process's lock (two routers on one file) before failing.
BUSY_TIMEOUT_MS = 5000
_VERSIONS = "CREATE TABLE IF NOT EXISTS schema_versions (owner TEXT PRIMARY KEY, version INTEGER NOT NULL)"


class DatabaseUnavailable(Exception):
    """The database could not be opened, read or written; the message says why."""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._schemas: dict[str, Sequence[str]] = {}
        self._connection: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="database")
        self._failing: str | None = None  # the failure last logged, until the database works again

    def add_schema(self, owner: str, migrations: Sequence[str]) -> None:
        """The tables ``owner`` keeps, as SQL scripts: ``migrations[n]`` takes them from version n to n + 1.

        When the file is opened, the scripts it has not run yet run, each in one transaction with
        the new version. A file from before versions were recorded is at version 0 for every owner,
        so an owner whose tables predate versioning makes its first script ``CREATE ... IF NOT
        EXISTS``: the tables already there are kept as they are.
        """
        if not owner.isidentifier():
            raise ValueError(f"a schema owner is a plain name, not {owner!r}")
        self._schemas[owner] = migrations

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the database thread, as one transaction; DatabaseUnavailable if it failed."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, work)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            connection = self._connect()
            with connection:  # commits, or rolls back on an error
                result = work(connection)
        except (sqlite3.Error, OSError) as error:
            self._disconnect()  # opened afresh next time: the file may have been repaired or replaced
            self._fail(error)
            raise DatabaseUnavailable(f"{self.path}: {error}") from error
        if self._failing is not None:
            logger.warning("database %s works again", self.path)
            self._failing = None
        return result

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
                self._migrate(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        connection.execute(_VERSIONS)
        for owner, migrations in self._schemas.items():
            row = connection.execute("SELECT version FROM schema_versions WHERE owner = ?", (owner,)).fetchone()
            version = row[0] if row else 0
            if version > len(migrations):  # a newer router's file: its tables may mean something else now
                raise sqlite3.DatabaseError(
                    f"its {owner} tables are at version {version}, written by a newer inference-service "
                    f"(this one knows {len(migrations)})"
                )
            for number, script in enumerate(migrations[version:], start=version + 1):
                connection.executescript(
                    f"BEGIN; {script}; INSERT INTO schema_versions VALUES ('{owner}', {number}) "
                    "ON CONFLICT (owner) DO UPDATE SET version = excluded.version; COMMIT;"
                )

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _fail(self, error: BaseException) -> None:
        reason = f"{error.__class__.__name__}: {error}"
        if reason != self._failing:
            logger.error(
                "database %s is unusable (%s): what cannot be written is dropped and counted "
                "(inference_*_lost_* in /metrics); serving continues",
                self.path,
                reason,
            )
            self._failing = reason


class BatchWriter(ABC):
    """What keeps its rows on the event loop and writes them through the database in batches: it
    writes them (:meth:`flush`) every ``interval_s`` once started, and once more when closed - at
    shutdown, so that nothing pending is lost to a restart."""

    def __init__(self, interval_s: float, name: str) -> None:
        self._interval_s = interval_s
        self._name = name
        self._timer: asyncio.Task[None] | None = None

    @abstractmethod
    async def flush(self) -> None:
        """Write what is pending, in one transaction."""

    async def on_interval(self) -> None:
        """What is done every interval: a flush, and whatever else the writer keeps up on a timer."""
        await self.flush()

    async def start(self) -> None:
        self._timer = asyncio.create_task(self._every_interval(), name=self._name)

    async def close(self) -> None:
        """Stop the timer and write what is left."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.flush()

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.on_interval()
