"""Fixtures for the router's unit tests."""

from __future__ import annotations

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
