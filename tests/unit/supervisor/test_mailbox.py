"""The owner loop alone: messages one at a time, and none left unanswered once the owner is gone."""

from __future__ import annotations

import asyncio

import pytest

from inference_service.supervisor.mailbox import Mailbox
from tests.unit.supervisor.fakes import eventually

pytestmark = pytest.mark.timeout(30)


class Owner:
    """Handles ``"last"`` as its final message and ``"boom"`` with a bug; answers refusals with ``"refused"``."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.refused: list[str] = []
        self.release = asyncio.Event()
        self.mailbox: Mailbox[str] = Mailbox("model:test", self.handle, self.refused.append)

    async def handle(self, message: str) -> None:
        if message == "boom":
            raise RuntimeError("a bug in a handler")
        if message == "last":
            await self.release.wait()  # a shutdown takes its time
            self.mailbox.close()
        self.handled.append(message)


async def test_messages_are_handled_one_at_a_time_in_order() -> None:
    owner = Owner()
    for message in ("a", "b", "c"):
        owner.mailbox.send(message)
    await eventually(lambda: len(owner.handled) == 3)
    assert owner.handled == ["a", "b", "c"]


async def test_a_message_queued_behind_the_last_one_is_refused_not_dropped() -> None:
    owner = Owner()
    owner.mailbox.send("last")
    owner.mailbox.send("queued")
    owner.release.set()
    await eventually(lambda: owner.refused == ["queued"])
    assert owner.handled == ["last"]


async def test_a_message_sent_after_the_loop_ended_is_refused_at_once() -> None:
    owner = Owner()
    owner.release.set()
    owner.mailbox.send("last")
    await eventually(lambda: owner.handled == ["last"])  # the loop ends as its last handler returns
    owner.mailbox.send("late")
    assert owner.refused == ["late"]


async def test_a_handler_that_raises_does_not_end_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    owner = Owner()
    owner.mailbox.send("boom")
    owner.mailbox.send("after")
    await eventually(lambda: owner.handled == ["after"])
    assert "handling boom failed" in caplog.text
    owner.release.set()
    owner.mailbox.send("last")
    await eventually(lambda: owner.handled == ["after", "last"])
