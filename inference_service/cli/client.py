"""Commands that talk to a running service over HTTP: ``ps``, ``models list|load|unload``, ``logs``, ``reload``,
``events``, ``usage``, ``cancel``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from inference_service.cli.common import CLIError, settings_from_args
from inference_service.cli.render import describe_event, model_line, print_json, status_text, table, until


def service_address(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The service's base URL and auth headers: flags first, then environment, then the config file.

    The config is read only for what the flags leave open: it is the service's, and its keys'
    ``env:VAR`` secrets are set in the service's environment, not necessarily in this shell.
    """
    url = args.url or os.environ.get("INFERENCE_SERVICE_URL")
    key = args.api_key
    if url is None or key is None:
        settings = settings_from_args(args)
        url = url or f"http://{settings.host}:{settings.port}"
        key = key or (settings.api_key.get_secret_value() if settings.api_key else None)  # INFERENCE_API_KEY too
    return url.rstrip("/"), ({"Authorization": f"Bearer {key}"} if key else {})


def error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
    return str(message or payload)


def service_call(args: argparse.Namespace, method: str, path: str) -> Any:
    url, headers = service_address(args)
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as error:
        raise CLIError(f"cannot reach the service at {url}: {error}") from None
    if response.status_code >= 400:
        raise CLIError(f"{method} {path}: HTTP {response.status_code}: {error_message(response)}")
    try:
        return response.json()
    except ValueError:
        raise CLIError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}") from None


def service_stream(
    args: argparse.Namespace, path: str, ready: threading.Event | None = None
) -> Iterator[dict[str, Any]]:
    """The JSON ``data:`` payloads of a Server-Sent Events endpoint, as they arrive, until it ends."""
    url, headers = service_address(args)
    try:
        with httpx.stream(
            "GET", url + path, headers=headers, timeout=httpx.Timeout(args.timeout, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise CLIError(f"GET {path}: HTTP {response.status_code}: {error_message(response)}")
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


def cmd_ps(args: argparse.Namespace) -> int:
    cards = service_call(args, "GET", "/v1/models")["data"]
    if args.json:
        print_json(cards)
        return 0
    now = time.time()
    rows = [["MODEL", "RUNTIME", "STATUS", "PID", "RSS", "CPU", "IN-FLIGHT", "UNTIL"]]
    for card in cards:
        rows.append(
            [
                card["id"],
                card["runtime"],
                status_text(card),
                str(card.get("pid") or "-"),
                f"{card['rss_mb']:.0f} MB" if card.get("rss_mb") is not None else "-",
                f"{card['cpu_percent']:.0f}%" if card.get("cpu_percent") is not None else "-",
                str(card.get("in_flight", 0)),
                until(card, now),
            ]
        )
    print(table(rows))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    cards = service_call(args, "GET", "/v1/models")["data"]
    if args.json:
        print_json(cards)
        return 0
    for card in cards:
        print(model_line(card))
    return 0


#: How long ``models load`` waits, after the load's answer, for the event stream to deliver
#: the model's own ``loaded`` (or ``failed``) line: the answer can overtake the event.
LOAD_EVENT_GRACE_S = 5.0


def cmd_models_load(args: argparse.Namespace) -> int:
    """Load, printing the model's state changes and load progress (from /v1/events) while it loads.

    The progress needs the ``read`` scope (the model's card, the events); a key with ``admin``
    alone loads without it - the load's own answer is what counts.
    """
    try:
        card = service_call(args, "GET", f"/v1/models/{quote(args.id, safe='')}")
    except CLIError:  # not readable by this key (or no such model: the load says so, in its own words)
        print(model_line(service_call(args, "POST", f"/v1/models/{quote(args.id, safe='')}/load")))
        return 0
    model_id = card["id"]
    started = time.monotonic()
    subscribed, settled = threading.Event(), threading.Event()

    def report() -> None:
        with contextlib.suppress(CLIError):  # progress is a courtesy: the load's own answer is what counts
            for event in service_stream(
                args, f"/v1/events?model={quote(model_id)}&types=model_state,load_progress", subscribed
            ):
                if line := describe_event(event, started):
                    print(line, file=sys.stderr, flush=True)
                if event["type"] == "model_state" and event["state"] in ("loaded", "failed"):
                    break
        settled.set()

    threading.Thread(target=report, daemon=True, name="load-progress").start()
    subscribed.wait(timeout=5.0)
    loaded = service_call(args, "POST", f"/v1/models/{quote(model_id, safe='')}/load")
    if card["status"] != "loaded":  # a load happened: its last line is still on its way
        settled.wait(timeout=LOAD_EVENT_GRACE_S)
    print(model_line(loaded))
    return 0


def cmd_models_unload(args: argparse.Namespace) -> int:
    print(model_line(service_call(args, "POST", f"/v1/models/{quote(args.id, safe='')}/unload")))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    base = f"/v1/models/{quote(args.id, safe='')}/logs" if args.id else "/v1/logs"
    tail = f"tail={args.tail}&" if args.tail is not None else ""
    if not args.follow:
        for line in service_call(args, "GET", f"{base}?{tail}")["lines"]:
            print(line)
        return 0
    for event in service_stream(args, f"{base}?{tail}follow=true"):
        print(event["line"], flush=True)
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the service to reload its config file; prints what changed."""
    result = service_call(args, "POST", "/admin/reload")
    for key in ("added", "removed", "restarted", "updated", "restart_required", "failures"):
        if result.get(key):
            print(f"{key}: {', '.join(result[key])}")
    print(f"config reloaded in {result['duration_ms']:.0f} ms" if result["ok"] else "config reloaded with failures")
    return 0 if result["ok"] else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel an inference request in flight by its id (POST /v1/requests/{id}/cancel)."""
    service_call(args, "POST", f"/v1/requests/{quote(args.id, safe='')}/cancel")
    print(f"cancelled {args.id}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """Print each event as one JSON line (pipe it to ``jq``)."""
    query = "&".join(
        f"{name}={quote(value)}" for name, value in (("model", args.model), ("types", args.types)) if value
    )
    for event in service_stream(args, "/v1/events" + (f"?{query}" if query else "")):
        print(json.dumps(event, separators=(",", ":")), flush=True)
    return 0


# --------------------------------------------------------------------------- parser


def cmd_usage(args: argparse.Namespace) -> int:
    """The usage ledger (GET /v1/usage): one row per key, model and hour, then the totals."""
    filters = (("key", args.key), ("model", args.model), ("since", args.since), ("until", args.until))
    query = "&".join(f"{name}={quote(value)}" for name, value in filters if value)
    usage = service_call(args, "GET", "/v1/usage" + (f"?{query}" if query else ""))
    if args.json:
        print_json(usage)
        return 0
    rows = [["KEY", "MODEL", "HOUR", "REQUESTS", "PROMPT", "COMPLETION", "ERRORS", "UPSTREAM"]]
    for row in [*usage["data"], {"key": "total", "model": "", "hour": "", **usage["totals"]}]:
        counts = [str(row[name]) for name in ("requests", "prompt_tokens", "completion_tokens", "errors")]
        rows.append([row["key"], row["model"], row["hour"], *counts, f"{row['upstream_seconds']:.1f}s"])
    print(table(rows))
    if not usage["complete"]:
        print("(the usage database could not be read: only usage not yet written is shown)")
    return 0
