"""The FastAPI application: composes supervisor, dispatcher and routes."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from inference_service import __version__
from inference_service.config import Settings
from inference_service.events import EventBus
from inference_service.router import api
from inference_service.router.api import openapi
from inference_service.router.config_reload import ConfigReloader, ConfigSource
from inference_service.router.console import routes as console
from inference_service.router.database import Database
from inference_service.router.observability import tracing
from inference_service.router.observability.activity import ActivityMiddleware
from inference_service.router.observability.history import ActivityHistory
from inference_service.router.observability.log_buffer import LogBuffer
from inference_service.router.observability.log_format import formatter
from inference_service.router.observability.memory import MemoryWatch
from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.dispatch import Dispatcher
from inference_service.router.proxy.resolution import ModelResolver
from inference_service.router.proxy.upstream import UpstreamClient
from inference_service.router.services import Services
from inference_service.router.serving import exception_handlers
from inference_service.router.serving.hot_routes import HotRoutes
from inference_service.router.serving.inflight import InFlight
from inference_service.router.serving.middleware import RequestContextMiddleware, RequestIdLogFilter
from inference_service.router.serving.shutdown import Shutdown, ShutdownMiddleware
from inference_service.router.tenancy.gate import Gate
from inference_service.router.tenancy.ledger import UsageLedger
from inference_service.router.tenancy.registry import Tenancy
from inference_service.router.tenancy.scopes import RouteScopes
from inference_service.runtimes.kv_store import KVFileStore
from inference_service.supervisor import RuntimeFactory, Supervisor


def _router_log_buffer(settings: Settings) -> LogBuffer:
    """Keep the router's recent log lines (``GET /v1/logs``), formatted as its log output is."""
    buffer = LogBuffer(settings.log_buffer_lines)
    buffer.addFilter(RequestIdLogFilter())
    buffer.setFormatter(formatter(settings.log_format))
    logging.getLogger().addHandler(buffer)
    return buffer


@asynccontextmanager
async def _reload_triggers(reloader: ConfigReloader, watch: bool) -> AsyncIterator[None]:
    """SIGHUP (when serving from the main thread) and, with ``watch``, the file watcher, for the app's lifetime.

    On the way out, a reload still running is cancelled and awaited: it has unwound (its
    models' changes handed to their actors) before the supervisor is closed.
    """
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = loop.create_task(reloader.reload_quietly("SIGHUP"), name="reload:SIGHUP")
        pending.add(task)
        task.add_done_callback(pending.discard)

    handles_signal = threading.current_thread() is threading.main_thread()
    if handles_signal:
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    watcher = loop.create_task(reloader.watch(), name="reload:watch") if watch else None
    try:
        yield
    finally:
        if handles_signal:
            loop.remove_signal_handler(signal.SIGHUP)
        tasks = [*pending, *([watcher] if watcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def create_app(
    settings: Settings,
    runtime_factory: RuntimeFactory,
    config_source: ConfigSource | None = None,
    watch_config: bool = False,
    events: EventBus | None = None,
    kv_store: KVFileStore | None = None,
) -> FastAPI:
    """The router. ``config_source`` enables config reload (SIGHUP, ``POST /admin/reload``, ``watch_config``).

    ``events`` is the bus the runtimes publish on, if they do; ``kv_store`` the one holding their saved slots.
    Raises ConfigError for a bad tracing setting (``[tracing]``, ``OTEL_*``).
    """
    supervisor = Supervisor(settings, runtime_factory, events)
    upstream = UpstreamClient(max_reply_bytes=settings.max_reply_bytes)
    metrics = Metrics(supervisor.events)
    database = Database(settings.usage_db)
    ledger = UsageLedger(database, metrics)
    history = ActivityHistory(database, metrics.activity_lost, settings)
    traces = tracing.start(settings.tracing, supervisor.events, metrics.registry)
    memory = MemoryWatch(supervisor)
    svc = Services(
        settings=settings,
        supervisor=supervisor,
        dispatcher=Dispatcher(settings, supervisor, upstream, metrics, ledger),
        resolver=ModelResolver(settings),
        metrics=metrics,
        tenancy=Tenancy(settings, ledger),
        kv_store=kv_store,
        activity=history,
    )

    log_buffer = _router_log_buffer(settings)
    reloader = ConfigReloader(svc, config_source) if config_source is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upstream.start()
        await supervisor.start()
        memory_watch = asyncio.create_task(memory.run(), name="memory-watch")
        await ledger.start()
        await history.start()
        try:
            if reloader is None:
                yield
            else:
                async with _reload_triggers(reloader, watch_config):
                    yield
        finally:
            memory_watch.cancel()
            await asyncio.gather(memory_watch, return_exceptions=True)  # its own end, not a stray task
            await supervisor.close()
            await upstream.close()
            await ledger.close()  # the last usage written: it survives the restart
            await history.close()  # and the last requests' records
            await database.close()
            if traces is not None:
                await traces.shutdown()
            logging.getLogger().removeHandler(log_buffer)

    app = FastAPI(title="inference-service", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    exception_handlers.install(app)  # the table HotRoutes answers from too
    app.state.services = svc
    app.state.log_buffer = log_buffer
    app.state.reloader = reloader
    api.include_routes(app)
    app.include_router(console.router)
    openapi.install(app)
    # Inside RequestContextMiddleware (added later = outermost): refusals carry the request id.
    app.state.in_flight = InFlight()  # the requests running: what the shutdown drains and a cancel cuts off
    app.state.shutdown = Shutdown(lambda: svc.settings.shutdown_grace_s, app.state.in_flight)  # grace: reloadable
    app.add_middleware(HotRoutes, routes=api.HOT_ROUTES)  # innermost: under every guard below
    app.add_middleware(ShutdownMiddleware, shutdown=app.state.shutdown)
    app.add_middleware(
        RequestContextMiddleware,
        gate=Gate(svc.tenancy, RouteScopes(app.routes)),  # every route is mounted by now: each must declare
        max_body_bytes=settings.max_body_bytes,
    )
    if traces is not None:
        traces.install(app)  # a SERVER span per request, inside the activity record it reads
    app.add_middleware(ActivityMiddleware, events=supervisor.events, history=history)  # outermost: refusals logged too

    return app
