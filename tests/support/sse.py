"""Reading a Server-Sent Events response the way a client does, line by line.

The router and orchestration tests assert on the wire format itself (comments, one
``[DONE]``, error events), so they read raw lines instead of going through an SDK.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

DONE = "[DONE]"


@dataclass
class SSEStream:
    """Everything one streamed response carried, in arrival order."""

    status: int
    headers: httpx.Headers
    data: list[str] = field(default_factory=list)  # the payload of every ``data:`` line
    comments: list[str] = field(default_factory=list)  # every ``:`` comment line, without the colon

    @property
    def chunks(self) -> list[dict[str, Any]]:
        """The JSON data payloads (everything but ``[DONE]``)."""
        return [json.loads(payload) for payload in self.data if payload != DONE]

    @property
    def content(self) -> str:
        """The concatenated ``delta.content`` of every chunk."""
        return "".join(
            (choice.get("delta") or {}).get("content") or ""
            for chunk in self.chunks
            for choice in chunk.get("choices") or []
        )


def sse_lines(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """``("data", payload)`` and ``("comment", text)`` for each non-blank line, as it arrives."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield "data", line[len("data: ") :]
        elif line.startswith(":"):
            yield "comment", line[1:].strip()


def post_sse(
    url: str, body: dict[str, Any], timeout_s: float = 120.0, headers: dict[str, str] | None = None
) -> SSEStream:
    """POST ``body`` and read the whole event stream."""
    with httpx.stream("POST", url, json=body, timeout=timeout_s, headers=headers) as response:
        stream = SSEStream(response.status_code, response.headers)
        if response.status_code != 200:
            response.read()
            stream.data.append(response.text)
            return stream
        for kind, text in sse_lines(response):
            (stream.data if kind == "data" else stream.comments).append(text)
    return stream


def longest_gap(lines: Iterator[str], events: int) -> float:
    """Read ``events`` more ``data:`` lines of a running stream; the longest wait for one of them.

    A token's time under the load of the moment: how long a runtime generating it may take to
    notice that its client closed the stream (it notices when it next writes).
    """
    longest, last = 0.0, time.monotonic()
    for line in lines:
        if line.startswith("data: "):
            now = time.monotonic()
            longest, last = max(longest, now - last), now
            events -= 1
            if not events:
                break
    return longest
