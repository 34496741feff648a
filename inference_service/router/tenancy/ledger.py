"""The usage ledger: per key, model and hour - requests, prompt and completion tokens, errors and
seconds of upstream time - kept in the router's database across restarts.

Every call to a model counts (an orchestration's stages each count for the model they ran on,
for the key of the request they serve): :meth:`UsageLedger.call` is entered when the dispatcher
admits the call and left when its slot is released - its seconds upstream, and an error if one
ended it (an upstream error status, the runtime unreachable or breaking mid-stream, an answer
too large; not the client leaving) - and the tokens its runtime reports are added as they arrive
(:meth:`tokens`). On the event loop that is a dictionary update; the rows go to the database in batches, every
:data:`FLUSH_INTERVAL_S` and at shutdown, on the database's thread, and to the per-key Prometheus
counters (``inference_key_*``) as they go. What a batch could not write
(see :mod:`~inference_service.router.database`) is dropped and counted in
``inference_usage_lost_requests_total``. Reads merge the rows not yet written, so they are current.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from inference_service.router.database import BatchWriter, Database, DatabaseUnavailable
from inference_service.router.observability import activity
from inference_service.router.observability.metrics import Metrics
from inference_service.router.tenancy import keys

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 2.0
HOUR_S = 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    hour INTEGER NOT NULL,  -- Unix seconds at the start of the hour (UTC)
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    upstream_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (key, model, hour)
) WITHOUT ROWID;
"""
_UPSERT = """
INSERT INTO usage (key, model, hour, requests, prompt_tokens, completion_tokens, errors, upstream_seconds)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key, model, hour) DO UPDATE SET
    requests = requests + excluded.requests,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    errors = errors + excluded.errors,
    upstream_seconds = upstream_seconds + excluded.upstream_seconds
"""
_SELECT = """
SELECT key, model, hour, requests, prompt_tokens, completion_tokens, errors, upstream_seconds FROM usage
WHERE (:key IS NULL OR key = :key) AND (:model IS NULL OR model = :model) AND hour >= :since AND hour < :until
"""

Row = tuple[str, str, int]  # key, model, hour


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    upstream_seconds: float = 0.0

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.errors += other.errors
        self.upstream_seconds += other.upstream_seconds


@dataclass(frozen=True)
class Query:
    key: str | None = None
    model: str | None = None
    since: int = 0  # Unix seconds; the rows of hours starting at or after it
    until: int = 2**62  # Unix seconds; the rows of hours starting before it

    def wants(self, row: Row) -> bool:
        key, model, hour = row
        return (self.key in (None, key)) and (self.model in (None, model)) and self.since <= hour < self.until


class _Call:
    """The context of one call: its seconds from admission to release, an error if it ended with one."""

    __slots__ = ("_ledger", "_model", "_started")

    def __init__(self, ledger: UsageLedger, model: str) -> None:
        self._ledger = ledger
        self._model = model
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.monotonic()
        if (record := activity.current()) is not None:
            record.model_calls += 1

    def __exit__(
        self, error_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        usage = self._ledger.pending(self._model)
        usage.requests += 1
        # An error ended it - the runtime unreachable, an answer too large - not the client leaving.
        usage.errors += error_type is not None and not issubclass(error_type, asyncio.CancelledError)
        usage.upstream_seconds += time.monotonic() - self._started


class UsageLedger(BatchWriter):
    """On the event loop, per call: a dictionary lookup and a few additions (it is on every request's path)."""

    def __init__(self, database: Database, metrics: Metrics, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        super().__init__(flush_interval_s, "usage-ledger")
        self._database = database
        self._metrics = metrics
        self._pending: dict[Row, Usage] = {}
        database.add_schema("usage", [SCHEMA])

    def pending(self, model: str) -> Usage:
        """The current key's row for ``model`` and this hour, not yet written."""
        row = (keys.current().name, model, int(time.time()) // HOUR_S * HOUR_S)
        usage = self._pending.get(row)
        if usage is None:
            usage = self._pending[row] = Usage()
        return usage

    def call(self, model: str) -> _Call:
        """One call to ``model`` for the current key, from its admission to the release of its slot
        (a context manager: a call that ends with an exception counts as an error)."""
        return _Call(self, model)

    def failed(self, model: str) -> None:
        """A call that ended normally with an error answer (an upstream error status)."""
        self.pending(model).errors += 1

    def tokens(self, model: str, prompt: int | None, completion: int | None) -> None:
        """The usage a runtime reported for a call to ``model`` (a stream's, an orchestration stage's)."""
        usage = self.pending(model)
        usage.prompt_tokens += prompt or 0
        usage.completion_tokens += completion or 0

    async def flush(self) -> None:
        """Write the pending rows in one transaction; if that fails, they are dropped and counted."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        for (key, model, _), usage in batch.items():  # Prometheus per batch too: off the per-request path
            self._metrics.record_key_usage(key, model, usage.requests, usage.prompt_tokens, usage.completion_tokens)
        rows = [(*row, *asdict(usage).values()) for row, usage in batch.items()]
        try:
            await self._database.run(lambda connection: connection.executemany(_UPSERT, rows))
        except DatabaseUnavailable:
            self._metrics.usage_lost.inc(sum(usage.requests for usage in batch.values()))

    async def query(self, query: Query) -> tuple[list[dict[str, Any]], bool]:
        """The rows ``query`` selects, written and pending merged, by hour then key then model; and
        whether they are complete (False when the database could not be read: only the pending rows)."""

        def select(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(_SELECT, asdict(query)).fetchall()

        totals: dict[Row, Usage] = {}
        complete = True
        try:
            for key, model, hour, *values in await self._database.run(select):
                totals[(key, model, hour)] = Usage(*values)
        except DatabaseUnavailable:
            complete = False
        for row, usage in self._pending.items():
            if query.wants(row):
                totals.setdefault(row, Usage()).add(usage)
        ordered = sorted(totals.items(), key=lambda item: (item[0][2], item[0][0], item[0][1]))
        return [
            {"key": key, "model": model, "hour": hour, **asdict(usage)} for (key, model, hour), usage in ordered
        ], complete
