"""Fixtures and helpers for the router's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from tests.unit.supervisor.fakes import Harness

MakeHarness = Callable[..., Harness]


@pytest.fixture
async def harnesses() -> AsyncIterator[MakeHarness]:
    """Make supervisors over fake runtimes (``Harness(models, **options)``); each is closed after the test."""
    made: list[Harness] = []

    def make(models: Sequence[str], **options: Any) -> Harness:
        made.append(Harness(models, **options))
        return made[-1]

    yield make
    for harness in made:
        await harness.supervisor.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request with a ``Content-Length`` body, for an upstream stand-in: its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    return await reader.readexactly(length)
