"""How the commands that talk to a running service print what it answers."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2))


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "   ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def until(card: dict[str, Any], now: float) -> str:
    """When the model will be unloaded for idleness, as ``ollama ps`` shows it."""
    if card["status"] != "loaded":
        return "-"
    if card.get("expires_at"):
        return f"in {duration(card['expires_at'] - now)}"
    return "busy" if card.get("ttl_s") else "forever"


def status_text(card: dict[str, Any]) -> str:
    # A crash restart is a `loading` entered with the crash as its reason.
    return "restarting" if card["status"] == "loading" and card.get("reason") else card["status"]


def model_line(card: dict[str, Any]) -> str:
    pid = card.get("pid") or "-"
    rss = f"{card['rss_mb']:.0f}MB" if card.get("rss_mb") is not None else "-"
    return f"{card['id']:<28} {card['status']:<10} {card['runtime']:<9} pid={pid:<8} rss={rss:<8} aliases={','.join(card['aliases'])}"


def describe_event(event: dict[str, Any], started: float) -> str | None:
    """One progress line for a state or load-progress event of the model being loaded."""
    elapsed = f"[{time.monotonic() - started:5.1f}s]"
    if event["type"] == "model_state":
        reason = f": {event['reason'].splitlines()[0]}" if event.get("reason") else ""
        return f"{elapsed} {event['model']}: {event['state']}{reason}"
    if event["type"] == "load_progress":
        expected = f" (usually ~{event['expected_s']:.1f}s)" if event.get("expected_s") else ""
        return f"{elapsed} {event['model']}: {event.get('phase', 'loading')}{expected}"
    return None
