"""Config reload: validate the file again, then apply it as a diff without dropping a request.

Triggered by ``POST /admin/reload``, SIGHUP, or ``serve --watch-config`` (the file polled
every :data:`WATCH_INTERVAL_S`). One reload runs at a time. An invalid file is rejected
with its one-line reason - logged, returned, published as a ``config_reload`` event - and
the running config stays; so is a file that would restart a model, or preload a new one,
from a model file that is not there, or whose pinned models exceed the capacity limits. A valid one is applied: the router's routing, queues and
limits at once (a restarted model's queue limits once its new process serves), then the models
through :mod:`inference_service.supervisor.reload`. API keys (``api_key``, ``[keys.*]``) apply
at once: a removed key is refused from the next request on. What each key does on reload is
declared with the key in :mod:`inference_service.config`: keys that only take effect at start-up
(listening address, logging, runtime binaries and timeouts) are reported in
``restart_required`` rather than half-applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from inference_service.config import STARTUP, ConfigError, Settings, load_settings, on_reload
from inference_service.events import CONFIG_RELOAD
from inference_service.router.proxy.resolution import ModelResolver
from inference_service.router.services import Services
from inference_service.runtimes.factory import holds_capacity
from inference_service.supervisor import reload as model_reload
from inference_service.supervisor.capacity import pinned_overflow

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 2.0
#: Top-level keys read once at start-up (by uvicorn, the middleware, logging, the upstream client or the runtimes).
STARTUP_KEYS = tuple(name for name in Settings.model_fields if on_reload(Settings, name) is STARTUP)


class ReloadRejected(Exception):
    """The new config is invalid; the message is its one-line reason."""


@dataclass(frozen=True)
class ConfigSource:
    """Where the running config came from, so a reload reads it the same way (CLI overrides included)."""

    path: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Settings:
        return load_settings(self.path, **self.overrides)

    def fingerprint(self) -> bytes | None:
        """The file's bytes (None if unreadable): what ``--watch-config`` compares."""
        path = self.path
        try:
            return path.read_bytes() if path else None
        except OSError:
            return None


class ConfigReloader:
    def __init__(self, svc: Services, source: ConfigSource) -> None:
        self._svc = svc
        self._source = source
        self._lock = asyncio.Lock()

    async def reload(self, trigger: str) -> dict[str, Any]:
        """Reload once; raise :class:`ReloadRejected` (old config kept) for an invalid file."""
        async with self._lock:
            started = time.perf_counter()
            svc = self._svc
            bus = svc.supervisor.events
            try:
                new = self._source.load()
            except ConfigError as error:
                self._reject(trigger, str(error))
            old = svc.settings
            changes = model_reload.plan(old, new)
            if missing := model_reload.missing_model_files(new, changes):
                self._reject(trigger, "; ".join(missing))
            if overflow := await asyncio.to_thread(pinned_overflow, new, holds_capacity):  # reads GGUF headers
                self._reject(trigger, overflow)
            restart_required = [key for key in STARTUP_KEYS if getattr(old, key) != getattr(new, key)]
            # Routing first: a removed model is refused (404) from now on, a new one is known.
            svc.settings = new
            svc.resolver = ModelResolver(new)
            svc.dispatcher.configure_queues(new, restarting=[model.id for model in changes.restarted])
            svc.tenancy.configure(new)  # a removed key is refused from the next request on
            if svc.activity is not None:
                svc.activity.configure(new)  # retention, who is captured
            try:
                failures = await model_reload.apply(svc.supervisor, new, changes)
            finally:
                svc.dispatcher.configure_queues(new)  # the restarted models' limits, for their new processes
            result: dict[str, Any] = {
                "ok": not failures,
                "trigger": trigger,
                **changes.summary(),
                "failures": failures,
                "restart_required": restart_required,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            logger.info("config reload (%s) applied: %s", trigger, {k: v for k, v in result.items() if v})
            bus.publish(CONFIG_RELOAD, **result)
            return result

    def _reject(self, trigger: str, reason: str) -> NoReturn:
        logger.error("config reload (%s) rejected, the running config stays: %s", trigger, reason)
        self._svc.supervisor.events.publish(CONFIG_RELOAD, ok=False, trigger=trigger, reason=reason)
        raise ReloadRejected(reason)

    async def reload_quietly(self, trigger: str) -> None:
        """For signals and the watcher: outcomes are logged and published, nobody awaits them."""
        with contextlib.suppress(ReloadRejected):
            await self.reload(trigger)

    async def watch(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Reload whenever the file's contents change (``serve --watch-config``)."""
        last = self._source.fingerprint()
        while True:
            await asyncio.sleep(interval_s)
            current = self._source.fingerprint()
            if current is not None and current != last:
                last = current
                await self.reload_quietly("watch")
