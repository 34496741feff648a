"""Fixtures for the supervisor acceptance tests: a real router per config, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import write_config
from tests.support.service import ServiceProcess, running_service

#: Starts a router for ``(models, **top_level_keys)`` and returns it; stopped at teardown.
StartService = Callable[..., ServiceProcess]


def _starter(stack: ExitStack, directory: Path) -> StartService:
    def start(models: Mapping[str, Mapping[str, Any]], **top_level: Any) -> ServiceProcess:
        config = write_config(directory / "config.toml", models, **top_level)
        return stack.enter_context(running_service(config, directory / "logs"))

    return start


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """A router of this test's own; every one started is stopped (children included) afterwards."""
    with ExitStack() as stack:
        yield _starter(stack, tmp_path)


@pytest.fixture(scope="module")
def start_module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartService]:
    """Like ``start_service``, shared by a module's tests when they only read its state."""
    with ExitStack() as stack:
        yield _starter(stack, tmp_path_factory.mktemp("service"))
