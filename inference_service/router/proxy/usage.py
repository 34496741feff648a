"""Token usage read from a whole non-streamed reply without parsing the reply.

The router passes a non-streamed answer through as bytes and needs only its ``usage``
for the metrics and the access log. Parsing all of it for that costs ~8 times the reply in
memory (Python objects for every token of a ``top_logprobs`` answer: a 47 MB reply took
400 MB), so the top-level ``"usage"`` object is located in the bytes and only it is
decoded. Every runtime the router speaks to (llama-server, Ollama, OpenAI-compatible hosts;
the chat, completions, Responses and Anthropic APIs) writes it after the choices, near the
end: the search runs backwards from there.
"""

from __future__ import annotations

import json
from typing import Any

_KEY = b'"usage"'
#: How much text after the key is decoded: a usage object (nested token details included) is far smaller.
_WINDOW_BYTES = 64 * 1024
#: Candidates tried from the end before giving up (each further one is a nested "usage" key or text).
_MAX_CANDIDATES = 8
_WHITESPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()


def _escaped(body: bytes, quote: int) -> bool:
    """Whether the quote at ``quote`` is escaped (an odd run of backslashes before it): inside a string."""
    start = quote
    while start > 0 and body[start - 1] == 0x5C:  # backslash
        start -= 1
    return (quote - start) % 2 == 1


def _object_after_key(body: bytes, key: int) -> dict[str, Any] | None:
    """The JSON object that is the value of the key starting at ``key``, if it is one."""
    position = key + len(_KEY)
    window = body[position : position + _WINDOW_BYTES].lstrip(_WHITESPACE)
    if not window.startswith(b":"):
        return None  # a string value "usage", not a key
    text = window[1:].lstrip(_WHITESPACE).decode("utf-8", errors="ignore")  # a cut last character is past the object
    if not text.startswith("{"):
        return None
    try:
        value, _ = _DECODER.raw_decode(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def usage_of(body: bytes) -> dict[str, Any] | None:
    """The reply's ``usage`` object, or None when none is found (the reply is then simply not counted)."""
    end = len(body)
    for _ in range(_MAX_CANDIDATES):
        key = body.rfind(_KEY, 0, end)
        if key < 0:
            return None
        if not _escaped(body, key) and (usage := _object_after_key(body, key)) is not None:
            return usage
        end = key
    return None
