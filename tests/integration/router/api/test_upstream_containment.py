"""``/upstream`` on a remote model never leaves the model's URL prefix, however the path is spelled.

The remote host here records every request as it arrived: a path that climbed out of
``/prefix`` would show there - with the model's credentials attached.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import wait_until
from tests.support.recording_host import RecordingHost, recording_host
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

REMOTE_ID = "remote1"
REMOTE_KEY = "remote-credential"


@pytest.fixture(scope="module")
def host() -> Iterator[RecordingHost]:
    with recording_host() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def service(start_router: StartRouter, host: RecordingHost) -> ServiceProcess:
    models = {REMOTE_ID: {"runtime": "remote", "url": f"{host.url}/prefix", "api_key": REMOTE_KEY}}
    service = start_router(models)
    wait_until(lambda: "/prefix/health" in host.paths(), timeout_s=30)  # probed healthy: GETs pass through
    return service


def raw_get(service: ServiceProcess, target: str) -> tuple[int, bytes]:
    """GET ``target`` byte for byte (curl --path-as-is): http.client does not normalise the path."""
    connection = http.client.HTTPConnection(service.url.removeprefix("http://"), timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_path_under_the_prefix_reaches_the_host_with_its_credentials(
    service: ServiceProcess, host: RecordingHost
) -> None:
    status, _ = raw_get(service, f"/upstream/{REMOTE_ID}/v1/models")
    assert status == 200
    assert any(seen.path == "/prefix/v1/models" and seen.authorization == f"Bearer {REMOTE_KEY}" for seen in host.seen)


@pytest.mark.parametrize(
    "target",
    [
        f"/upstream/{REMOTE_ID}/../../other-tenant/admin",
        f"/upstream/{REMOTE_ID}/%2e%2e/x",
        f"/upstream/{REMOTE_ID}/..%2fsecret.txt",
        f"/upstream/{REMOTE_ID}/%252e%252e/x",
    ],
    ids=["dot-dot", "encoded", "encoded-slash", "double-encoded"],
)
def test_a_path_leaving_the_prefix_is_a_400_and_never_sent(
    service: ServiceProcess, host: RecordingHost, target: str
) -> None:
    status, body = raw_get(service, target)
    assert status == 400, body
    assert b"path_outside_model" in body
    assert all(path.startswith("/prefix/") for path in host.paths()), host.paths()
