"""An owner's inbox: one task handles its messages one at a time, in the order they arrive.

Whatever the owner's state is, only its handler changes it, so that state needs no lock
and no other task ever sees half a change. When the owner is finished (it calls
:meth:`Mailbox.close` from its last handler) the loop ends - and a message still queued
then, or sent later, is not dropped: ``refuse`` answers it at once, so nobody who sent
one waits for a reply that can no longer come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

M = TypeVar("M")


class Mailbox(Generic[M]):
    def __init__(self, name: str, handle: Callable[[M], Awaitable[None]], refuse: Callable[[M], None]) -> None:
        self._name = name
        self._handle = handle
        self._refuse = refuse
        self._inbox: asyncio.Queue[M] = asyncio.Queue()  # unbounded: each sender posts at most one per action
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

    def start(self) -> None:
        """Start the loop (once; sending starts it too)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def send(self, message: M) -> None:
        if self._closed:
            self._refuse(message)
            return
        self.start()
        self._inbox.put_nowait(message)

    def close(self) -> None:
        """Called by the owner's handler: the message being handled is the last one."""
        self._closing = True

    async def _run(self) -> None:
        try:
            while not self._closing:
                message = await self._inbox.get()
                try:
                    await self._handle(message)
                except Exception:  # a bug in a handler must not leave the owner without its loop
                    logger.exception("%s: handling %s failed", self._name, message)
        finally:
            self._closed = True
            while not self._inbox.empty():
                self._refuse(self._inbox.get_nowait())
