"""``inference-service``: serve, provision the runtime and models, manage a running service.

Every failure the user can fix ends in one ``inference-service: error: ...`` line and
exit code 2 - never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from inference_service import __version__
from inference_service.config import ConfigError, Settings, config_path_from_env, load_settings
from inference_service.provisioning.index import ProvisioningError
from inference_service.provisioning.progress import Progress

PROG = "inference-service"
EXIT_USAGE = 2
EXIT_STARTUP_FAILURE = 3  # what uvicorn exits with when the app cannot start
EXIT_READER_LEFT = 128 + signal.SIGPIPE  # what a shell reports for a writer whose reader left (`| head`)


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    try:
        return load_settings(args.config, **overrides)
    except ConfigError as error:
        raise CLIError(str(error)) from None


# --------------------------------------------------------------------------- serve


def _configure_logging(level: str, log_format: str) -> None:
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
    """Refuse to start (with the reason) when a model that must load at start-up cannot."""
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
    return binary


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    binary = check_startable(settings)
    # Imported only now: a config mistake is reported without first paying for the web stack.
    from inference_service.router.app import create_app
    from inference_service.router.config_reload import ConfigSource
    from inference_service.router.serving.server import serve
    from inference_service.runtimes.factory import runtime_factory

    _configure_logging(settings.log_level, settings.log_format)
    source = ConfigSource(config_path_from_env(args.config), {"host": args.host, "port": args.port})
    app = create_app(settings, runtime_factory(settings, binary), config_source=source, watch_config=args.watch_config)
    started = serve(app, settings)
    return 0 if started else EXIT_STARTUP_FAILURE


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
    ids = [settings.model_id(name) or name for name in args.ids]  # aliases too, as `models load` accepts
    for path in pull_models(settings, ids, Progress()):
        print(path)
    return 0


# --------------------------------------------------------------------------- a running service


def _service(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The service's base URL and auth headers: flags first, then environment, then the config file."""
    settings = _settings(args)
    url = (args.url or os.environ.get("INFERENCE_SERVICE_URL") or f"http://{settings.host}:{settings.port}").rstrip("/")
    key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)  # INFERENCE_API_KEY too
    return url, ({"Authorization": f"Bearer {key}"} if key else {})


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
    return str(message or payload)


def _service_call(args: argparse.Namespace, method: str, path: str) -> Any:
    url, headers = _service(args)
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as error:
        raise CLIError(f"cannot reach the service at {url}: {error}") from None
    if response.status_code >= 400:
        raise CLIError(f"{method} {path}: HTTP {response.status_code}: {_error_message(response)}")
    try:
        return response.json()
    except ValueError:
        raise CLIError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}") from None


def _service_stream(
    args: argparse.Namespace, path: str, ready: threading.Event | None = None
) -> Iterator[dict[str, Any]]:
    """The JSON ``data:`` payloads of a Server-Sent Events endpoint, as they arrive, until it ends."""
    url, headers = _service(args)
    try:
        with httpx.stream(
            "GET", url + path, headers=headers, timeout=httpx.Timeout(args.timeout, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise CLIError(f"GET {path}: HTTP {response.status_code}: {_error_message(response)}")
            if ready is not None:
                ready.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[len("data: ") :])
    except httpx.HTTPError as error:
        raise CLIError(f"cannot reach the service at {url}: {error}") from None
    finally:
        if ready is not None:
            ready.set()


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2))


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "   ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _until(card: dict[str, Any], now: float) -> str:
    """When the model will be unloaded for idleness, as ``ollama ps`` shows it."""
    if card["status"] != "loaded":
        return "-"
    if card.get("expires_at"):
        return f"in {_duration(card['expires_at'] - now)}"
    return "busy" if card.get("ttl_s") else "forever"


def _status_text(card: dict[str, Any]) -> str:
    # A crash restart is a `loading` entered with the crash as its reason.
    return "restarting" if card["status"] == "loading" and card.get("reason") else card["status"]


def _model_line(card: dict[str, Any]) -> str:
    pid = card.get("pid") or "-"
    rss = f"{card['rss_mb']:.0f}MB" if card.get("rss_mb") is not None else "-"
    return f"{card['id']:<28} {card['status']:<10} {card['runtime']:<9} pid={pid:<8} rss={rss:<8} aliases={','.join(card['aliases'])}"


def cmd_ps(args: argparse.Namespace) -> int:
    cards = _service_call(args, "GET", "/v1/models")["data"]
    if args.json:
        _print_json(cards)
        return 0
    now = time.time()
    rows = [["MODEL", "RUNTIME", "STATUS", "PID", "RSS", "CPU", "IN-FLIGHT", "UNTIL"]]
    for card in cards:
        rows.append(
            [
                card["id"],
                card["runtime"],
                _status_text(card),
                str(card.get("pid") or "-"),
                f"{card['rss_mb']:.0f} MB" if card.get("rss_mb") is not None else "-",
                f"{card['cpu_percent']:.0f}%" if card.get("cpu_percent") is not None else "-",
                str(card.get("in_flight", 0)),
                _until(card, now),
            ]
        )
    print(_table(rows))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    cards = _service_call(args, "GET", "/v1/models")["data"]
    if args.json:
        _print_json(cards)
        return 0
    for card in cards:
        print(_model_line(card))
    return 0


def _describe(event: dict[str, Any], started: float) -> str | None:
    """One progress line for a state or load-progress event of the model being loaded."""
    elapsed = f"[{time.monotonic() - started:5.1f}s]"
    if event["type"] == "model_state":
        reason = f": {event['reason'].splitlines()[0]}" if event.get("reason") else ""
        return f"{elapsed} {event['model']}: {event['state']}{reason}"
    if event["type"] == "load_progress":
        expected = f" (usually ~{event['expected_s']:.1f}s)" if event.get("expected_s") else ""
        return f"{elapsed} {event['model']}: {event.get('phase', 'loading')}{expected}"
    return None


#: How long ``models load`` waits, after the load's answer, for the event stream to deliver
#: the model's own ``loaded`` (or ``failed``) line: the answer can overtake the event.
LOAD_EVENT_GRACE_S = 5.0


def cmd_models_load(args: argparse.Namespace) -> int:
    """Load, printing the model's state changes and load progress (from /v1/events) while it loads."""
    card = _service_call(args, "GET", f"/v1/models/{quote(args.id, safe='')}")
    model_id = card["id"]
    started = time.monotonic()
    subscribed, settled = threading.Event(), threading.Event()

    def report() -> None:
        with contextlib.suppress(CLIError):  # progress is a courtesy: the load's own answer is what counts
            for event in _service_stream(
                args, f"/v1/events?model={quote(model_id)}&types=model_state,load_progress", subscribed
            ):
                if line := _describe(event, started):
                    print(line, file=sys.stderr, flush=True)
                if event["type"] == "model_state" and event["state"] in ("loaded", "failed"):
                    break
        settled.set()

    threading.Thread(target=report, daemon=True, name="load-progress").start()
    subscribed.wait(timeout=5.0)
    loaded = _service_call(args, "POST", f"/v1/models/{quote(model_id, safe='')}/load")
    if card["status"] != "loaded":  # a load happened: its last line is still on its way
        settled.wait(timeout=LOAD_EVENT_GRACE_S)
    print(_model_line(loaded))
    return 0


def cmd_models_unload(args: argparse.Namespace) -> int:
    print(_model_line(_service_call(args, "POST", f"/v1/models/{quote(args.id, safe='')}/unload")))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    base = f"/v1/models/{quote(args.id, safe='')}/logs" if args.id else "/v1/logs"
    tail = f"tail={args.tail}&" if args.tail is not None else ""
    if not args.follow:
        for line in _service_call(args, "GET", f"{base}?{tail}")["lines"]:
            print(line)
        return 0
    for event in _service_stream(args, f"{base}?{tail}follow=true"):
        print(event["line"], flush=True)
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the service to reload its config file; prints what changed."""
    result = _service_call(args, "POST", "/admin/reload")
    for key in ("added", "removed", "restarted", "updated", "restart_required", "failures"):
        if result.get(key):
            print(f"{key}: {', '.join(result[key])}")
    print(f"config reloaded in {result['duration_ms']:.0f} ms" if result["ok"] else "config reloaded with failures")
    return 0 if result["ok"] else 1


def cmd_events(args: argparse.Namespace) -> int:
    """Print each event as one JSON line (pipe it to ``jq``)."""
    query = "&".join(
        f"{name}={quote(value)}" for name, value in (("model", args.model), ("types", args.types)) if value
    )
    for event in _service_stream(args, "/v1/events" + (f"?{query}" if query else "")):
        print(json.dumps(event, separators=(",", ":")), flush=True)
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """The usage ledger (GET /v1/usage): one row per key, model and hour, then the totals."""
    filters = (("key", args.key), ("model", args.model), ("since", args.since), ("until", args.until))
    query = "&".join(f"{name}={quote(value)}" for name, value in filters if value)
    usage = _service_call(args, "GET", "/v1/usage" + (f"?{query}" if query else ""))
    if args.json:
        _print_json(usage)
        return 0
    rows = [["KEY", "MODEL", "HOUR", "REQUESTS", "PROMPT", "COMPLETION", "ERRORS", "UPSTREAM"]]
    for row in [*usage["data"], {"key": "total", "model": "", "hour": "", **usage["totals"]}]:
        counts = [str(row[name]) for name in ("requests", "prompt_tokens", "completion_tokens", "errors")]
        rows.append([row["key"], row["model"], row["hour"], *counts, f"{row['upstream_seconds']:.1f}s"])
    print(_table(rows))
    if not usage["complete"]:
        print("(the usage database could not be read: only usage not yet written is shown)")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="OpenAI-compatible router for local LLM runtimes.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    config_parent = argparse.ArgumentParser(add_help=False)
    config_parent.add_argument(
        "--config", metavar="PATH", help="config file (default: $INFERENCE_CONFIG or ./config.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[config_parent], help="run the router (default 127.0.0.1:8085)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8085)")
    serve.add_argument(
        "--watch-config",
        action="store_true",
        help="reload the config file whenever it changes (also: SIGHUP, POST /admin/reload)",
    )
    serve.set_defaults(handler=cmd_serve)

    runtime = commands.add_parser("runtime", help="provision runtimes").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    install = runtime.add_parser(
        "install", parents=[config_parent], help="find or build llama-server; prints its path last"
    )
    install.add_argument("--cuda", action="store_true", help="build with -DGGML_CUDA=ON (needs the CUDA toolkit)")
    install.set_defaults(handler=cmd_runtime_install)

    models = commands.add_parser("models", help="fetch model files; list/load/unload on a running service")
    model_actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = model_actions.add_parser(
        "pull", parents=[config_parent], help="fetch model files; Ollama pulls ollama models (idempotent)"
    )
    pull.add_argument("ids", nargs="*", metavar="ID", help="model ids or aliases (default: every llamacpp model)")
    pull.set_defaults(handler=cmd_models_pull)
    remote_parent = argparse.ArgumentParser(add_help=False, parents=[config_parent])
    remote_parent.add_argument(
        "--url", help="service URL (default: $INFERENCE_SERVICE_URL or http://<host>:<port> from config)"
    )
    remote_parent.add_argument(
        "--api-key", help="a key of the service (default: $INFERENCE_API_KEY, else the config's api_key)"
    )
    remote_parent.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    json_parent = argparse.ArgumentParser(add_help=False)
    json_parent.add_argument("--json", action="store_true", help="print the service's JSON instead of a table")
    model_actions.add_parser("list", parents=[remote_parent, json_parent], help="models and their states").set_defaults(
        handler=cmd_models_list
    )
    for name, handler, what in (
        ("load", cmd_models_load, "load a model, showing its progress"),
        ("unload", cmd_models_unload, "unload a model (in-flight requests finish first)"),
    ):
        action = model_actions.add_parser(name, parents=[remote_parent], help=what)
        action.add_argument("id", metavar="ID")
        action.set_defaults(handler=handler)

    ps = commands.add_parser(
        "ps", parents=[remote_parent, json_parent], help="models, processes and idle deadlines (like ollama ps)"
    )
    ps.set_defaults(handler=cmd_ps)
    logs = commands.add_parser(
        "logs", parents=[remote_parent], help="a model runtime's log, or the router's without ID"
    )
    logs.add_argument("id", metavar="ID", nargs="?", help="model id or alias (default: the router's own log)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines as they are written")
    logs.add_argument("--tail", type=int, metavar="N", help="start with only the last N lines")
    logs.set_defaults(handler=cmd_logs)
    events = commands.add_parser("events", parents=[remote_parent], help="follow /v1/events, one JSON object per line")
    events.add_argument("--model", help="only these models (comma-separated ids or aliases)")
    events.add_argument(
        "--types",
        help="only these event types (comma-separated: model_state, load_progress, eviction, config_reload, request)",
    )
    events.set_defaults(handler=cmd_events)
    commands.add_parser(
        "reload", parents=[remote_parent], help="reload the service's config file (POST /admin/reload)"
    ).set_defaults(handler=cmd_reload)
    usage = commands.add_parser(
        "usage", parents=[remote_parent, json_parent], help="usage per key, model and hour (GET /v1/usage)"
    )
    usage.add_argument("--key", help="one key's name (a key without admin scope sees its own only)")
    usage.add_argument("--model", help="one model id")
    usage.add_argument("--since", help="ISO 8601 time or Unix seconds: hours starting at or after it")
    usage.add_argument("--until", help="ISO 8601 time or Unix seconds: hours starting before it")
    usage.set_defaults(handler=cmd_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _run(build_parser().parse_args(argv))
        sys.stdout.flush()  # the buffered rest too: a reader that left shows up here, not at the interpreter's exit
    except BrokenPipeError:
        # Python's "Note on SIGPIPE": the reader (`| head`) has what it wanted. Point stdout at
        # devnull so the interpreter's own final flush cannot fail again, and stop without a word.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_READER_LEFT
    return status


def _run(args: argparse.Namespace) -> int:
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
