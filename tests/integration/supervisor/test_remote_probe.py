"""A remote model's state is known from start-up: probed at once, not ``unloaded`` until its first request."""

from __future__ import annotations

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.service import free_port

pytestmark = pytest.mark.integration


def test_remote_models_show_loaded_or_failed_with_the_reason_right_after_start(start_service: StartService) -> None:
    upstream = start_service({SMOLLM2_ID: smollm2()})  # another router: a healthy OpenAI-compatible host
    nobody = f"http://127.0.0.1:{free_port()}"
    service = start_service(
        {
            "up": {"runtime": "remote", "url": upstream.url, "upstream_model": SMOLLM2_ID},
            "down": {"runtime": "remote", "url": nobody},
        }
    )

    up, down = model_card(service, "up"), model_card(service, "down")

    assert up["status"] == "loaded"
    assert down["status"] == "failed"
    assert "unreachable" in down["reason"]
