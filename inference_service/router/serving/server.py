"""The HTTP server around the app: uvicorn, with a graceful stop and guarded connections.

uvicorn's own stop closes the listener and, after ``timeout_graceful_shutdown``, cancels
whatever still runs - a stream ends as a truncated chunked body, a pending request as a
bare 500. Here the first SIGTERM/SIGINT runs :meth:`Shutdown.drain_and_close` first (the
listener stays open meanwhile, so late clients get a 503 ``shutting_down`` they can
retry elsewhere, not a refused connection), a second one skips the grace, and only
then does uvicorn stop and the lifespan stop the children.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from inference_service.config import Settings
from inference_service.router.serving.connections import guarded_http_protocol
from inference_service.router.serving.shutdown import Shutdown

logger = logging.getLogger(__name__)

#: What uvicorn may still wait for after the drain: connections closing, nothing that serves.
_LEFTOVER_TIMEOUT_S = 5
#: The collector's thresholds while serving (CPython's: 700, 10, 10). A proxied request allocates
#: a few thousand objects: at 700 the young generation was collected several times per request,
#: each time walking every request in flight. The older generations' 20 are what bench/README.md's
#: figures were measured with.
_SERVING_GC_THRESHOLDS = (10_000, 20, 20)


def _tune_gc_for_serving() -> None:
    """Keep the garbage collector off what start-up built (it lives as long as the process).

    ``gc.freeze()`` moves every object allocated so far - the web framework, the schemas, the
    app, what its lifespan started - out of the collector's sight, so the full collections
    that request garbage still triggers walk only what requests allocated: on this app a full
    collection over the start-up heap took ~45 ms of a single core.

    The one place the router touches the collector, and the right one: it runs once the
    server has started (the app's lifespan included), so there is nothing left of start-up
    to freeze later; and the collector is the process's, not the app's - an app built in a
    test, or served some other way, leaves its host's collector alone.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_SERVING_GC_THRESHOLDS)


class GracefulServer(uvicorn.Server):
    """A uvicorn server whose stop signals go through the app's :class:`Shutdown` first."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self._shutdown = shutdown
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_signals = 0
        self._stopping: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        _tune_gc_for_serving()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Runs in the main thread between two bytecodes: only schedules work on the loop."""
        if not self.started or self._loop is None:
            super().handle_exit(sig, frame)  # still starting up: nothing to drain yet
            return
        self._stop_signals += 1
        if self._stop_signals == 1:
            self._loop.call_soon_threadsafe(self._begin_stop, sig)
        elif self._stop_signals == 2:
            self._loop.call_soon_threadsafe(self._skip_grace)
        else:
            super().handle_exit(sig, frame)

    def _begin_stop(self, sig: int) -> None:
        logger.info(
            "stop signal: draining for up to %gs (shutdown_grace_s); send it again to cut requests off",
            self._shutdown.grace_s,
        )
        self._stopping = asyncio.create_task(self._shutdown.drain_and_close(), name="shutdown")
        self._stopping.add_done_callback(lambda task: self._drained(task, sig))

    def _skip_grace(self) -> None:
        logger.warning("second stop signal: cutting running requests off now")
        self._shutdown.skip_grace()

    def _drained(self, task: asyncio.Task[None], sig: int) -> None:
        """Only once every request has its answer does uvicorn stop serving (and re-raise ``sig``)."""
        if not task.cancelled() and task.exception() is not None:
            logger.error("shutdown drain failed; stopping anyway", exc_info=task.exception())
        super().handle_exit(sig, None)


#: Idle keep-alive connections are kept longer than client pools keep theirs (httpx 5 s, the
#: OpenAI SDK and LiteLLM's pools among them): with uvicorn's default of 5 s, a client reusing a
#: connection at the moment the router closes it gets a "Connection error" that is not its fault.
KEEP_ALIVE_S = 65


def serve(app: FastAPI, settings: Settings) -> bool:
    """Serve ``app`` until stopped by a signal, then stop the children; False if start-up failed."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        http=guarded_http_protocol(settings.header_timeout_s, settings.body_timeout_s, settings.max_connections),
        timeout_graceful_shutdown=_LEFTOVER_TIMEOUT_S,
        timeout_keep_alive=KEEP_ALIVE_S,
        access_log=False,  # the router logs its own access line per request (router/activity.py)
    )
    server = GracefulServer(config, app.state.shutdown)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return server.started
