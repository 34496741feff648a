"""Continuity: what a model has computed (its prompt cache, its slots) kept within bounds and across stops.

The tests drive real routers and real llama-servers and read llama-server's own accounts:
its resident memory, and the prompt tokens it processed for a turn (``timings.prompt_n``,
see tests/support/conversation.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import write_config
from tests.support.service import ServiceProcess, running_service

StartService = Callable[..., ServiceProcess]


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """A router for ``(models, **top_level)``; every one started is stopped afterwards."""
    with ExitStack() as stack:

        def start(models: Mapping[str, Mapping[str, Any]], **top_level: Any) -> ServiceProcess:
            config = write_config(tmp_path / "config.toml", models, **top_level)
            return stack.enter_context(running_service(config, tmp_path / "logs"))

        yield start
