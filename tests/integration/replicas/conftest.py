"""Replicas: one model id on several real llama-server processes, chosen per request by cache affinity."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import write_config
from tests.support.service import ServiceProcess, running_service

StartService = Callable[..., ServiceProcess]
#: A llama-server (re)start on a contended 2-core machine: order, not speed.
TIMEOUT_S = 180.0


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """A router for ``(models, **top_level)``; every one started is stopped (children included) afterwards."""
    with ExitStack() as stack:

        def start(models: Mapping[str, Mapping[str, Any]], **top_level: Any) -> ServiceProcess:
            config = write_config(tmp_path / "config.toml", models, **top_level)
            return stack.enter_context(running_service(config, tmp_path / "logs", wait_ready=True))

        yield start
