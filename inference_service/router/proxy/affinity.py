"""What a request tells the choice of a replica: its conversation's leading blocks and its session.

A replica serves a follow-up turn fast when it still holds the conversation's prefix in its
KV cache, so the supervisor sends a request back to the replica that served the longest
prefix it shares with an earlier one (:mod:`inference_service.supervisor.replicas.routing`).
The supervisor knows no HTTP; this module reads the request body the router already parsed:
the prompt - messages (with Anthropic's ``system``), a Responses ``input`` (with its
``instructions``) or a completion ``prompt`` - serialized part by part, so an earlier turn's
text is a prefix of the next one's, cut in fixed blocks and hashed as a chain (each hash
covers everything before it). An explicit session key pins a conversation: the ``user``
field, or an ``X-Session-Id`` header.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from inference_service.router.serving.middleware import session_id_var
from inference_service.supervisor import Affinity

#: Characters per block (~64 tokens): a prefix is known to the nearest block.
BLOCK_CHARS = 256
#: Blocks hashed at most (64k characters): the rest of a longer prompt adds nothing to the choice.
MAX_BLOCKS = 256

_PROMPT_KEYS = ("system", "instructions", "messages", "input", "prompt")


def _clipped(value: Any, limit: int) -> Any:
    """``value`` with each string cut to ``limit`` characters: the first ``limit`` characters of its JSON
    are the same (a character is one or more in JSON), without a 20 MB base64 image serialized whole."""
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, dict):
        return {key: _clipped(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_clipped(item, limit) for item in value]
    return value


def _serialized(body: dict[str, Any], limit: int) -> Iterator[str]:
    for key in _PROMPT_KEYS:
        value = body.get(key)
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for item in value:
                yield (
                    item
                    if isinstance(item, str)
                    else json.dumps(_clipped(item, limit), sort_keys=True, separators=(",", ":"))
                )
                yield "\n"


def prompt_parts(body: dict[str, Any], limit: int) -> Iterator[str]:
    """The prompt's parts in order, each serialized on its own so that an earlier turn's are a prefix,
    until ``limit`` characters are given: no more is serialized than the first ``limit`` characters
    need (a 20 MB base64 image took 138 ms on the event loop, on every request, to be cut away)."""
    given = 0
    for part in _serialized(body, limit):
        yield part[: limit - given]
        given += len(part)
        if given >= limit:
            return


def prefix_hashes(body: dict[str, Any]) -> tuple[int, ...]:
    """Chained hashes of the prompt's complete leading blocks, shortest prefix first."""
    text = "".join(prompt_parts(body, BLOCK_CHARS * MAX_BLOCKS))
    hashes: list[int] = []
    chain = hashlib.blake2b(digest_size=8)
    for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):
        chain.update(text[start : start + BLOCK_CHARS].encode())
        hashes.append(int.from_bytes(chain.copy().digest(), "big"))
    return tuple(hashes)


def affinity_of(body: dict[str, Any]) -> Affinity:
    """The request's session (``X-Session-Id``, else the ``user`` field) and prompt prefix."""
    user = body.get("user")
    session = session_id_var.get() or (user if isinstance(user, str) and user else None)
    return Affinity(session=session, prefix=prefix_hashes(body))
