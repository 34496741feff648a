"""``inference-service``: serve, provision the runtime and models, manage a running service.

Every failure the user can fix ends in one ``inference-service: error: ...`` line and
exit code 2 - never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from inference_service.config import ConfigError, Settings, load_settings
from inference_service.provisioning.index import ProvisioningError
from inference_service.provisioning.progress import Progress

PROG = "inference-service"
EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    try:
        return load_settings(args.config, **overrides)
    except ConfigError as error:
        raise CLIError(str(error)) from None


# --------------------------------------------------------------------------- serve


def _configure_logging(level: str, log_format: str) -> None:
    from inference_service.router.log_format import formatter
    from inference_service.router.middleware import RequestIdLogFilter

    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # health polls every 50 ms would drown the log


def check_startable(settings: Settings) -> Path | None:
    """Refuse to start (with the reason) when a model that must load at start-up cannot."""
    from inference_service.provisioning.llamacpp import configured_binary

    llamacpp_models = [m for m in settings.models.values() if m.runtime == "llamacpp"]
    try:
        binary = configured_binary(settings) if llamacpp_models else None
    except ProvisioningError as error:
        raise CLIError(str(error)) from None
    if llamacpp_models and binary is None:
        raise CLIError("no llama-server binary found: run `inference-service runtime install` (or `make setup`), "
                       "set LLAMA_SERVER_BIN, or put llama-server on PATH")  # fmt: skip
    for model in llamacpp_models:
        path = settings.model_path(model)
        if model.preload and not path.is_file():
            raise CLIError(f"models.{model.id}.path: model file {path} not found "
                           f"(run `inference-service models pull {model.id}`)")  # fmt: skip
    return binary


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    binary = check_startable(settings)
    # Imported only now: a config mistake is reported without first paying for the web stack.
    import uvicorn

    from inference_service.router.app import create_app
    from inference_service.runtimes.factory import runtime_factory

    _configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, runtime_factory(settings, binary))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=3,
        access_log=False,  # the router logs its own access line per request (router/activity.py)
    )
    return 0


# --------------------------------------------------------------------------- provisioning


def cmd_runtime_install(args: argparse.Namespace) -> int:
    from inference_service.provisioning.llamacpp import ensure_binary

    settings = _settings(args)
    binary = ensure_binary(settings, Progress(), cuda=args.cuda)
    print(binary)
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from inference_service.provisioning.models import pull_models

    settings = _settings(args)
    for path in pull_models(settings, args.ids, Progress()):
        print(path)
    return 0


# --------------------------------------------------------------------------- a running service


def _service_call(args: argparse.Namespace, method: str, path: str) -> Any:
    settings = _settings(args)
    url = (args.url or os.environ.get("INFERENCE_SERVICE_URL") or f"http://{settings.host}:{settings.port}").rstrip("/")
    headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as error:
        raise CLIError(f"cannot reach the service at {url}: {error}") from None
    try:
        payload = response.json()
    except ValueError:
        raise CLIError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}") from None
    if response.status_code >= 400:
        message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
        raise CLIError(f"{method} {path}: HTTP {response.status_code}: {message or payload}")
    return payload


def _model_line(card: dict[str, Any]) -> str:
    pid = card.get("pid") or "-"
    rss = f"{card['rss_mb']:.0f}MB" if card.get("rss_mb") is not None else "-"
    return f"{card['id']:<28} {card['status']:<10} {card['runtime']:<9} pid={pid:<8} rss={rss:<8} aliases={','.join(card['aliases'])}"


def cmd_models_list(args: argparse.Namespace) -> int:
    for card in _service_call(args, "GET", "/v1/models")["data"]:
        print(_model_line(card))
    return 0


def cmd_models_load(args: argparse.Namespace) -> int:
    print(_model_line(_service_call(args, "POST", f"/v1/models/{args.id}/load")))
    return 0


def cmd_models_unload(args: argparse.Namespace) -> int:
    print(_model_line(_service_call(args, "POST", f"/v1/models/{args.id}/unload")))
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="OpenAI-compatible router for local LLM runtimes.")
    config_parent = argparse.ArgumentParser(add_help=False)
    config_parent.add_argument("--config", metavar="PATH", help="config file (default: $INFERENCE_CONFIG or ./config.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[config_parent], help="run the router (default 127.0.0.1:8085)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8085)")
    serve.set_defaults(handler=cmd_serve)

    runtime = commands.add_parser("runtime", help="provision runtimes").add_subparsers(dest="action", required=True, metavar="ACTION")
    install = runtime.add_parser("install", parents=[config_parent], help="find or build llama-server; prints its path last")
    install.add_argument("--cuda", action="store_true", help="build with -DGGML_CUDA=ON (needs the CUDA toolkit)")
    install.set_defaults(handler=cmd_runtime_install)

    models = commands.add_parser("models", help="fetch model files; list/load/unload on a running service")
    model_actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = model_actions.add_parser("pull", parents=[config_parent], help="fetch model files; Ollama pulls ollama models (idempotent)")
    pull.add_argument("ids", nargs="*", metavar="ID", help="model ids (default: every llamacpp model)")
    pull.set_defaults(handler=cmd_models_pull)
    remote_parent = argparse.ArgumentParser(add_help=False, parents=[config_parent])
    remote_parent.add_argument("--url", help="service URL (default: $INFERENCE_SERVICE_URL or http://<host>:<port> from config)")
    remote_parent.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    model_actions.add_parser("list", parents=[remote_parent], help="models and their states").set_defaults(handler=cmd_models_list)
    for name, handler in (("load", cmd_models_load), ("unload", cmd_models_unload)):
        action = model_actions.add_parser(name, parents=[remote_parent], help=f"{name} a model on the running service")
        action.add_argument("id", metavar="ID")
        action.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (CLIError, ProvisioningError) as error:
        message = str(error)
        first, _, rest = message.partition("\n")
        print(f"{PROG}: error: {first}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
