"""A child that exits while starting: the model is ``failed`` with the child's own words, the router lives on."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import chat, load, model_card
from tests.support.configs import SMOLLM2_FILE, SMOLLM2_ID, smollm2
from tests.support.service import ServiceProcess
from tests.support.timing import budget_s

pytestmark = pytest.mark.integration

BAD_FLAG = "bad-flag"
CORRUPT = "corrupt-gguf"
#: What llama-server itself prints for each failure (so we know the reason is its stderr tail).
BAD_FLAG_MESSAGE = "invalid argument: --no-such-flag"
CORRUPT_MESSAGE = "failed to load model"


@pytest.fixture(scope="module")
def service(start_module_service: StartService, tmp_path_factory: pytest.TempPathFactory) -> ServiceProcess:
    """One router with a healthy model and two that cannot start; the tests only load and read."""
    corrupt = tmp_path_factory.mktemp("models") / "corrupt.gguf"
    corrupt.write_bytes(SMOLLM2_FILE.read_bytes()[: 256 * 1024])  # a valid header, then nothing: truncated tensors
    return start_module_service(
        {
            SMOLLM2_ID: smollm2(),
            BAD_FLAG: smollm2(extra_args=["--no-such-flag"]),
            CORRUPT: smollm2(path=str(corrupt)),
        }
    )


@pytest.mark.parametrize(("model_id", "message"), [(BAD_FLAG, BAD_FLAG_MESSAGE), (CORRUPT, CORRUPT_MESSAGE)])
def test_load_of_a_child_that_exits_answers_503_with_its_output_within_2s(
    service: ServiceProcess, model_id: str, message: str
) -> None:
    started = time.monotonic()
    response = load(service, model_id)
    elapsed, budget = time.monotonic() - started, budget_s(2.0)
    assert response.status_code == 503
    assert message in response.json()["error"]["message"]
    assert elapsed < budget, f"the failure took {elapsed:.2f}s to surface (budget {budget:.1f}s)"


@pytest.mark.parametrize(("model_id", "message"), [(BAD_FLAG, BAD_FLAG_MESSAGE), (CORRUPT, CORRUPT_MESSAGE)])
def test_failed_model_reports_failed_with_the_stderr_tail(service: ServiceProcess, model_id: str, message: str) -> None:
    load(service, model_id)
    card = model_card(service, model_id)
    assert card["status"] == "failed"
    assert message in card["reason"]
    assert card["last_error"] == card["reason"]
    assert card["pid"] is None


def test_router_keeps_serving_other_models_after_a_start_failure(service: ServiceProcess) -> None:
    load(service, BAD_FLAG)
    assert service.process.poll() is None
    assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200
    assert chat(service, SMOLLM2_ID).status_code == 200


def test_requests_to_a_failed_model_get_503_without_respawning_it(service: ServiceProcess) -> None:
    """Within failed_retry_s a request learns the reason at once; it does not pay for another doomed start."""
    load(service, CORRUPT)
    spawns_before = service.log().count(f"spawned llama-server[{CORRUPT}]")
    responses = [chat(service, CORRUPT) for _ in range(3)]
    assert [response.status_code for response in responses] == [503, 503, 503]
    assert all(CORRUPT_MESSAGE in response.json()["error"]["message"] for response in responses)
    assert service.log().count(f"spawned llama-server[{CORRUPT}]") == spawns_before
