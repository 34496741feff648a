"""Tracing off - the default - costs the data path nothing: every seam hands back a handle that does
nothing, and the OpenTelemetry SDK is never imported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator

from inference_service.router.observability import tracing
from inference_service.runtimes.base import Endpoint
from tests.support.service import REPO_ROOT

BUILD_AN_APP = """
import sys
from inference_service.config import Settings
from inference_service.router.app import create_app
create_app(Settings(), lambda config: None)
print(sorted(name for name in sys.modules if name.startswith("opentelemetry.sdk")))
"""


def test_an_app_built_without_tracing_never_imports_the_sdk() -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", BUILD_AN_APP], capture_output=True, text=True, cwd=REPO_ROOT, env=environ, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


async def test_outside_a_traced_request_the_seams_do_nothing() -> None:
    endpoint = Endpoint("http://127.0.0.1:1", "m")
    call = tracing.upstream_call("m", "llamacpp", endpoint, "/v1/chat/completions", {"model": "m"})
    headers: dict[str, str] = {}

    async def blocks() -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"

    tracing.inject(headers)
    with tracing.admission("m", 2, 0), tracing.stage("critic", "m", 1), call:
        call.replied(200, b"{}")
    assert headers == {}
    assert call.observe(relayed := blocks()) is relayed
    assert tracing.exemplar() is None
