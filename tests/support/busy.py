"""Keep a model busy on purpose: one request held in flight for as long as a test needs.

Capacity and drain behaviour depend on a model having work in progress; a stream that
cannot end by itself (``ignore_eos`` with a long ``max_tokens``) is real work that the
test, not the model, decides when to stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support.api import model_card
from tests.support.service import ServiceProcess


def endless_chat(model_id: str, max_tokens: int = 1500) -> dict[str, Any]:
    """The body of a streaming chat that cannot end by itself before ``max_tokens`` (``ignore_eos``)."""
    return {
        "model": model_id,
        "messages": [{"role": "user", "content": "Count to one thousand."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }


@contextmanager
def request_in_flight(service: ServiceProcess, model_id: str, max_tokens: int = 1500) -> Iterator[Iterator[str]]:
    """A streaming chat on ``model_id`` whose first token has arrived; leaving the block closes it.

    Yields the stream's remaining lines, for a test that reads how it went on. The model's
    context per slot must fit ``max_tokens`` (e.g. ``ctx_size=2048, parallel=1``).
    """
    body = endless_chat(model_id, max_tokens)
    with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept referenced: a discarded iterator closes the stream
        assert next(lines).startswith('data: {"choices"')
        assert model_card(service, model_id)["in_flight"] == 1
        yield lines
