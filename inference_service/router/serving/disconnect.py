"""Noticing a client that hangs up while its non-streaming request waits or runs.

A streamed response notices at its next write; a non-streaming one writes nothing until
the answer is ready, so without a watch an abandoned request would keep its place in the
queue and its llama-server slot until the model finished an answer nobody will read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

T = TypeVar("T")

#: The status of a request cut short - its client gone before the answer was complete (nginx's
#: "client closed request"): in its access line and ``inference_requests_total``. Nobody reads it.
CLIENT_CLOSED = 499


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


#: What says the client went away: ours, or Starlette's (raised by a body read the hang-up cut off).
CLIENT_GONE: tuple[type[Exception], ...] = (ClientDisconnected, ClientDisconnect)


async def unless_disconnected(
    receive: Receive, work: Awaitable[T], on_disconnect: Callable[[], None] | None = None
) -> T:
    """Await ``work`` in this task while a watcher waits for ``http.disconnect``.

    On a disconnect the watcher calls ``on_disconnect`` and cancels this task: a queued
    request leaves the queue, a running upstream call is closed (llama-server then frees
    the slot), and ClientDisconnected is raised. The body must already have been read. The
    watcher is one parked task per request, woken only by the disconnect or cancelled when
    ``work`` is done: nothing on the hot path polls.
    """
    task = asyncio.current_task()
    assert task is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        if on_disconnect is not None:
            on_disconnect()
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            task.uncancel()
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()
