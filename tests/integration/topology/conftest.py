"""One multi-host topology (tests/support/topology.py) shared by this package's tests.

Tests kill back router A and start it again; ``topology`` hands each test a topology whose
back routers are both up, so no test depends on another's order or outcome.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.topology import Topology, running_topology


@pytest.fixture(scope="package")
def shared_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with running_topology(tmp_path_factory.mktemp("topology")) as topology:
        yield topology


@pytest.fixture
def topology(shared_topology: Topology) -> Topology:
    """The shared topology with both back routers running (a failed test may have left one dead)."""
    for back in shared_topology.backs:
        if not back.running():
            back.start()
    return shared_topology
