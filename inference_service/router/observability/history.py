"""The activity history: each request to a model, as its access line tells it, kept in the
router's database for ``activity_retention_days`` - and, for the models and keys that opt in
with ``capture = true``, the request's and the response's bodies.

A record's id is the time the request ended, in microseconds (made unique and increasing in
this process): it is known the moment the request ends, so the live ``request`` event carries
it, the console merges live and stored rows by it, a capture is tied to it before either is
written, and paging by ``before=<id>`` stays stable while new requests are added (they all
have larger ids). On the event loop a record is one list append; the records go to the
database in batches on its thread (every :data:`FLUSH_INTERVAL_S` and at shutdown), like the
usage ledger's rows, and what a batch could not write is dropped and counted in
``inference_activity_lost_records_total`` (see :mod:`~inference_service.router.database`).

Captures are sensitive - prompts and answers as the client sent and received them - so they
are off unless configured, readable by ``admin`` keys only, and bounded: each body is kept up
to ``capture_max_bytes`` (its full size is recorded), a stream as the raw SSE the client got.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from prometheus_client import Counter
from starlette.types import Message

from inference_service.config import Settings
from inference_service.router.database import BatchWriter, Database, DatabaseUnavailable

FLUSH_INTERVAL_S = 2.0
PRUNE_INTERVAL_S = 60.0
DAY_S = 86400
US = 1_000_000
#: Records waiting for the next batch; past this (a database far slower than the traffic) they are lost.
MAX_PENDING = 10_000
#: Captured bytes waiting for the next batch; past this a record keeps no capture (memory stays bounded).
MAX_PENDING_CAPTURE_BYTES = 64 * 1024 * 1024

SCHEMA = """
CREATE TABLE activity (
    id INTEGER PRIMARY KEY,  -- the time the request ended, in microseconds since the epoch
    key TEXT,
    model TEXT,
    status INTEGER,
    record TEXT NOT NULL  -- the access line's fields, as JSON
);
CREATE INDEX activity_by_model ON activity (model, id);
CREATE TABLE activity_capture (
    id INTEGER PRIMARY KEY,  -- its activity record's
    request BLOB NOT NULL,
    request_bytes INTEGER NOT NULL,  -- the body's whole size: more than is kept means truncated
    response BLOB NOT NULL,
    response_bytes INTEGER NOT NULL
)
"""
_INSERT = "INSERT OR IGNORE INTO activity (id, key, model, status, record) VALUES (?, ?, ?, ?, ?)"
_INSERT_CAPTURE = "INSERT OR IGNORE INTO activity_capture VALUES (?, ?, ?, ?, ?)"
_SELECT = """
SELECT id, record, EXISTS (SELECT 1 FROM activity_capture WHERE activity_capture.id = activity.id) FROM activity
WHERE (:key IS NULL OR key = :key) AND (:model IS NULL OR model = :model)
    AND status BETWEEN :status_from AND :status_to AND id >= :since AND id < :before
ORDER BY id DESC LIMIT :limit
"""
_SELECT_CAPTURE = "SELECT request, request_bytes, response, response_bytes FROM activity_capture WHERE id = ?"


class Body:
    """One body as it passed, kept up to a limit; its whole size is counted."""

    __slots__ = ("_limit", "kept", "size")

    def __init__(self, limit: int) -> None:
        self.kept = bytearray()
        self.size = 0
        self._limit = limit

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = self._limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]


class Capture:
    """A request's body and its response's, each up to ``limit`` bytes (the middleware feeds them)."""

    __slots__ = ("request", "response")

    def __init__(self, limit: int) -> None:
        self.request = Body(limit)
        self.response = Body(limit)

    def receiving(self, receive: Callable[[], Awaitable[Message]]) -> Callable[[], Awaitable[Message]]:
        """``receive``, keeping the request body's chunks as they are read."""

        async def capturing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.request.add(message.get("body", b""))
            return message

        return capturing_receive


@dataclass(frozen=True)
class Query:
    key: str | None = None
    model: str | None = None
    status_from: int = 0  # statuses in [status_from, status_to]
    status_to: int = 999
    since: int = 0  # ids (microseconds) at or after it
    before: int = 2**62  # ids before it: the paging cursor
    limit: int = 50


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    has_more: bool  # older records match too: ask again with ``before`` = the last record's id
    complete: bool  # False when the database could not be read (then there are no records)


class Kept(NamedTuple):
    """What :meth:`ActivityHistory.add` kept of a request: its record's id (None: dropped, over
    MAX_PENDING) and whether its capture (False: none, or dropped over MAX_PENDING_CAPTURE_BYTES)."""

    record_id: int | None
    captured: bool


class ActivityHistory(BatchWriter):
    """The records of requests to models and their captures: on the event loop, one append per request."""

    def __init__(
        self, database: Database, lost: Counter, settings: Settings, flush_interval_s: float = FLUSH_INTERVAL_S
    ) -> None:
        """``lost`` counts the records that could not be written (``inference_activity_lost_records``)."""
        super().__init__(flush_interval_s, "activity-history")
        self._database = database
        self._lost = lost
        self._pending: list[tuple[int, dict[str, Any], Capture | None]] = []
        self._pending_capture_bytes = 0
        self._last_id = 0
        self._prune_due = True
        self._last_prune = 0.0
        database.add_schema("activity", [SCHEMA])
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        """Take the retention and who is captured from ``settings`` (at start-up and on every reload)."""
        self.retention_s = settings.activity_retention_days * DAY_S
        self._capture_models = frozenset(model.id for model in settings.models.values() if model.capture)
        self._capture_keys = frozenset(key.name for key in settings.keys.values() if key.capture)
        self.capture_max_bytes = settings.capture_max_bytes
        #: Whether any request may be captured: the one check a request pays when capture is off.
        self.capturing = bool(self._capture_models or self._capture_keys)
        self._prune_due = True  # a shorter retention applies from the next batch on

    def wants_capture(self, model: str | None, key: str | None) -> bool:
        return model in self._capture_models or key in self._capture_keys

    def add(self, summary: dict[str, Any], ended_at: float, capture: Capture | None) -> Kept:
        """Keep a finished request's record (and its capture), as far as the pending bounds allow: what
        was kept, for the ``request`` event to tell no more than that. ``ended_at``: Unix seconds."""
        if len(self._pending) >= MAX_PENDING:
            self._lost.inc()
            return Kept(None, False)
        record_id = self._last_id = max(self._last_id + 1, int(ended_at * US))
        if capture is not None:
            size = len(capture.request.kept) + len(capture.response.kept)
            if self._pending_capture_bytes + size > MAX_PENDING_CAPTURE_BYTES:
                capture = None
            else:
                self._pending_capture_bytes += size
        self._pending.append((record_id, summary, capture))
        return Kept(record_id, capture is not None)

    async def on_interval(self) -> None:
        if self._prune_due or time.monotonic() - self._last_prune >= PRUNE_INTERVAL_S:
            self._prune_due = False
            self._last_prune = time.monotonic()
            await self.prune()
        await self.flush()

    async def flush(self) -> None:
        """Write the pending records in one transaction; if that fails, they are dropped and counted."""
        if not self._pending:
            return
        batch, self._pending, self._pending_capture_bytes = self._pending, [], 0

        def write(connection: sqlite3.Connection) -> None:  # on the database's thread, the JSON too
            records = [
                (record_id, summary["key"], summary["model"], summary["status"], json.dumps(summary, default=str))
                for record_id, summary, _ in batch
            ]
            captures = [
                (record_id, bytes(c.request.kept), c.request.size, bytes(c.response.kept), c.response.size)
                for record_id, _, c in batch
                if c is not None
            ]
            connection.executemany(_INSERT, records)
            connection.executemany(_INSERT_CAPTURE, captures)

        try:
            await self._database.run(write)
        except DatabaseUnavailable:
            self._lost.inc(len(batch))

    async def prune(self) -> None:
        """Delete the records (and captures) older than the retention; a failure waits for the next prune."""
        oldest_kept = int((time.time() - self.retention_s) * US)

        def delete(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM activity WHERE id < ?", (oldest_kept,))
            connection.execute("DELETE FROM activity_capture WHERE id < ?", (oldest_kept,))

        with contextlib.suppress(DatabaseUnavailable):  # the database logged it; serving goes on
            await self._database.run(delete)

    async def query(self, query: Query) -> Page:
        """The newest ``query.limit`` records it selects, newest first (the pending batch is written
        first, so the requests that just ended are there)."""
        await self.flush()
        parameters = {**asdict(query), "limit": query.limit + 1}  # one more: are there older ones?

        def select(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(_SELECT, parameters).fetchall()

        try:
            rows = await self._database.run(select)
        except DatabaseUnavailable:
            return Page([], has_more=False, complete=False)
        records = [
            {"id": record_id, "time": record_id / US, **json.loads(record), "captured": bool(captured)}
            for record_id, record, captured in rows[: query.limit]
        ]
        return Page(records, has_more=len(rows) > query.limit, complete=True)

    async def capture(self, record_id: int) -> dict[str, Any] | None:
        """The bodies captured for record ``record_id``, None if it has none (DatabaseUnavailable if unreadable)."""
        await self.flush()
        row = await self._database.run(lambda connection: connection.execute(_SELECT_CAPTURE, (record_id,)).fetchone())
        if row is None:
            return None
        request, request_bytes, response, response_bytes = row
        return {"request": _body(request, request_bytes), "response": _body(response, response_bytes)}


def _body(kept: bytes, size: int) -> dict[str, Any]:
    return {"body": kept.decode(errors="replace"), "bytes": size, "truncated": size > len(kept)}
