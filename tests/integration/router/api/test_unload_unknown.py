"""``POST /v1/models/{id}/unload`` of a model that does not exist - or no longer does - is a 404 ``model_not_found``.

An unload waits for the model's in-flight requests; a config reload may remove the model
meanwhile. The answer is then the same 404 as for a name never configured, in the OpenAI
envelope, from the one translation of the supervisor's refusals (``map_supervisor_errors``)
- not an internal error.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.api import model_card, unload
from tests.support.busy import request_in_flight
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until, write_config
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ServiceProcess, Path]]:
    """A router serving SmolLM2 (preloaded, one slot), and its config file (to reload)."""
    config = write_config(tmp_path / "config.toml", {SMOLLM2_ID: smollm2(preload=True, ctx_size=2048, parallel=1)})
    with running_service(config, tmp_path / "logs", wait_ready=True) as started:
        yield started, config


def assert_model_not_found(response: httpx.Response, name: str) -> None:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("not_found_error", "model_not_found"), error
    assert f"'{name}'" in error["message"], error


def test_unloading_a_model_never_configured_is_a_404_model_not_found(
    service: tuple[ServiceProcess, Path],
) -> None:
    assert_model_not_found(unload(service[0], "no-such-model"), "no-such-model")


def test_a_model_removed_by_a_reload_while_its_unload_drains_is_a_404_model_not_found(
    service: tuple[ServiceProcess, Path],
) -> None:
    router, config = service
    with ThreadPoolExecutor(max_workers=2) as pool:
        with request_in_flight(router, SMOLLM2_ID):
            unloading = pool.submit(unload, router, SMOLLM2_ID, TIMEOUT_S)
            wait_until(lambda: model_card(router, SMOLLM2_ID)["status"] == "unloading", timeout_s=TIMEOUT_S)
            write_config(config, {GEMMA_ID: gemma()})
            reloading = pool.submit(httpx.post, f"{router.url}/admin/reload", timeout=TIMEOUT_S)
            wait_until(
                lambda: httpx.get(f"{router.url}/v1/models/{SMOLLM2_ID}", timeout=TIMEOUT_S).status_code == 404,
                timeout_s=TIMEOUT_S,
            )
        # The stream is closed: the drain ends, the unload answers - for a model that is gone.
        assert_model_not_found(unloading.result(timeout=TIMEOUT_S), SMOLLM2_ID)
        assert reloading.result(timeout=TIMEOUT_S).json()["ok"] is True
