"""``inference-service``: serve, provision the runtime and models, manage a running service.

Every failure the user can fix ends in one ``inference-service: error: ...`` line and
exit code 2 - never a traceback.

The package: ``common`` (exit codes, errors, config), ``local`` (serve, install, pull),
``client`` (commands against a running service), ``render`` (their output); here the parser and ``main``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from inference_service import __version__
from inference_service.cli.client import (
    cmd_cancel,
    cmd_events,
    cmd_logs,
    cmd_models_list,
    cmd_models_load,
    cmd_models_unload,
    cmd_ps,
    cmd_reload,
    cmd_usage,
)
from inference_service.cli.common import EXIT_READER_LEFT, EXIT_USAGE, PROG, CLIError
from inference_service.cli.local import cmd_models_pull, cmd_runtime_install, cmd_serve
from inference_service.provisioning.index import ProvisioningError


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
    cancel = commands.add_parser(
        "cancel", parents=[remote_parent], help="cancel a request in flight (POST /v1/requests/{id}/cancel)"
    )
    cancel.add_argument("id", metavar="ID", help="the request's id (its X-Request-ID, as in the access log)")
    cancel.set_defaults(handler=cmd_cancel)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = run_command(build_parser().parse_args(argv))
        sys.stdout.flush()  # the buffered rest too: a reader that left shows up here, not at the interpreter's exit
    except BrokenPipeError:
        # Python's "Note on SIGPIPE": the reader (`| head`) has what it wanted. Point stdout at
        # devnull so the interpreter's own final flush cannot fail again, and stop without a word.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_READER_LEFT
    return status


def run_command(args: argparse.Namespace) -> int:
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
