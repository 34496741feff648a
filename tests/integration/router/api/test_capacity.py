"""Loading through the API: unknown ids and readiness. (Refusal with 507 when capacity is
exhausted is tested in supervisor/test_capacity_limits.py.)"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.api import load, unload
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """Two models, room for one, nothing preloaded."""
    return start_router({SMOLLM2_ID: smollm2(ctx_size=4096), GEMMA_ID: gemma()}, max_loaded_models=1)


def test_loading_an_unknown_model_is_404(router: ServiceProcess) -> None:
    response = load(router, "no-such-model")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_ready_is_503_with_a_reason_until_a_model_is_loaded(router: ServiceProcess) -> None:
    for model_id in (SMOLLM2_ID, GEMMA_ID):
        assert unload(router, model_id).status_code == 200
    not_ready = httpx.get(router.url + "/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["reason"]
    assert load(router, SMOLLM2_ID).status_code == 200
    assert httpx.get(router.url + "/health/ready").status_code == 200
