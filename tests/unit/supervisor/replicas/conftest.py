"""The replica tests' harness: every :class:`~tests.unit.supervisor.fakes.Replicas` made is closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.unit.supervisor.fakes import Replicas


@pytest.fixture
async def make_replicas() -> AsyncIterator[Any]:
    made: list[Replicas] = []

    def make(replicas: int, model_keys: dict[str, Any] | None = None, **top_level: Any) -> Replicas:
        made.append(Replicas(replicas, model_keys, **top_level))
        return made[-1]

    yield make
    for harness in made:
        await harness.supervisor.close()
