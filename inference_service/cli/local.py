"""Commands that act on this machine: ``serve``, ``runtime install``, ``models pull``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from inference_service.cli.common import EXIT_STARTUP_FAILURE, CLIError, settings_from_args
from inference_service.config import ConfigError, Settings, config_path_from_env
from inference_service.provisioning.index import ProvisioningError
from inference_service.provisioning.progress import Progress


def configure_logging(level: str, log_format: str) -> None:
    from inference_service.router.observability.log_format import formatter
    from inference_service.router.serving.middleware import RequestIdLogFilter

    # No record field the formats use needs the caller's frame, thread or process: not looking
    # them up saves ~10 % of the cost of the access line logged per request (the logging
    # HOWTO's "Optimization" section names these switches).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # health polls every 50 ms would drown the log


def check_startable(settings: Settings) -> Path | None:
    """Refuse to start (with the reason) when a model that must load at start-up cannot, or the
    pinned models could not all be resident within the capacity limits."""
    from inference_service.provisioning.llamacpp import configured_binary

    llamacpp_models = [m for m in settings.models.values() if m.runtime == "llamacpp"]
    try:
        binary = configured_binary(settings) if llamacpp_models else None
    except ProvisioningError as error:
        raise CLIError(str(error)) from None
    if llamacpp_models and binary is None:
        raise CLIError(
            "no llama-server binary found: run `inference-service runtime install` (or `make setup`), "
            "set LLAMA_SERVER_BIN, or put llama-server on PATH"
        )
    for model in llamacpp_models:
        path = settings.model_path(model)
        if model.preload and not path.is_file():
            raise CLIError(
                f"models.{model.id}.path: model file {path} not found (run `inference-service models pull {model.id}`)"
            )
    from inference_service.runtimes.factory import holds_capacity
    from inference_service.supervisor.capacity import pinned_overflow

    if overflow := pinned_overflow(settings, holds_capacity):
        raise CLIError(overflow)
    return binary


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, host=args.host, port=args.port)
    binary = check_startable(settings)
    # Imported only now: a config mistake is reported without first paying for the web stack.
    from inference_service.events import EventBus
    from inference_service.router.app import create_app
    from inference_service.router.config_reload import ConfigSource
    from inference_service.router.serving.server import serve
    from inference_service.runtimes.factory import runtime_factory
    from inference_service.runtimes.kv_store import KVFileStore

    configure_logging(settings.log_level, settings.log_format)
    source = ConfigSource(config_path_from_env(args.config), {"host": args.host, "port": args.port})
    events = EventBus()  # one bus: the runtimes publish their KV cache saves on it too
    kv_store = KVFileStore(settings.kv_cache_dir, settings.kv_cache_disk_mb)
    try:
        app = create_app(
            settings,
            runtime_factory(settings, binary, events, kv_store),
            config_source=source,
            watch_config=args.watch_config,
            events=events,
            kv_store=kv_store,
        )
    except ConfigError as error:  # tracing's OTEL_* variables are read as the app is built
        raise CLIError(str(error)) from None
    started = serve(app, settings)
    return 0 if started else EXIT_STARTUP_FAILURE


# --------------------------------------------------------------------------- provisioning


def cmd_runtime_install(args: argparse.Namespace) -> int:
    from inference_service.provisioning.llamacpp import ensure_binary

    settings = settings_from_args(args)
    binary = ensure_binary(settings, Progress(), cuda=args.cuda)
    print(binary)
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from inference_service.provisioning.models import pull_models

    settings = settings_from_args(args)
    ids = [settings.model_id(name) or name for name in args.ids]  # aliases too, as `models load` accepts
    for path in pull_models(settings, ids, Progress()):
        print(path)
    return 0


# --------------------------------------------------------------------------- a running service
