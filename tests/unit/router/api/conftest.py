"""A whole router app in process (no model, no runtime started), with keys, for the API's answers to bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inference_service.config import Settings
from inference_service.router.app import create_app
from inference_service.runtimes.factory import runtime_factory

#: Every scope: reads every key's usage and activity, and the captures.
OPS = {"Authorization": "Bearer ops-secret"}


@pytest.fixture
def ops_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(usage_db=tmp_path / "usage.db", keys={"ops": {"key": "ops-secret", "scopes": ["admin"]}})
    with TestClient(create_app(settings, runtime_factory(settings, None)), headers=OPS) as client:
        yield client
