"""``/upstream/{model}/{path}``: one child's own endpoints as-is, behind the API key; only POST loads."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil
import pytest

from inference_service.runtimes.llamacpp import API_KEY_ENV
from tests.integration.router.conftest import StartRouter
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

KEY = "ops-secret"
COLD_ID = "smollm2-cold"


@pytest.fixture(scope="module")
def service(start_router: StartRouter) -> ServiceProcess:
    models = {SMOLLM2_ID: smollm2(preload=True, aliases=["smol"]), COLD_ID: smollm2()}
    return start_router(models, wait_ready=False, api_key=KEY)


@pytest.fixture(scope="module")
def admin(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=120.0, headers={"Authorization": f"Bearer {KEY}"}) as http:
        http.post(f"/v1/models/{SMOLLM2_ID}/load").raise_for_status()
        yield http


def _card(admin: httpx.Client, model_id: str) -> dict[str, Any]:
    return admin.get(f"/v1/models/{model_id}").raise_for_status().json()  # type: ignore[no-any-return]


def test_props_slots_and_metrics_of_one_child_come_back_as_is(admin: httpx.Client) -> None:
    props = admin.get("/upstream/smol/props")
    assert props.status_code == 200, props.text
    assert props.json()["model_alias"] == SMOLLM2_ID
    slots = admin.get(f"/upstream/{SMOLLM2_ID}/slots")
    assert slots.status_code == 200 and isinstance(slots.json(), list) and len(slots.json()) == 2
    metrics = admin.get(f"/upstream/{SMOLLM2_ID}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "llamacpp:prompt_tokens_total" in metrics.text


def test_the_childs_own_error_status_is_passed_through(admin: httpx.Client) -> None:
    card = _card(admin, SMOLLM2_ID)
    auth = {"Authorization": f"Bearer {psutil.Process(card['pid']).environ()[API_KEY_ENV]}"}  # the child's own key
    direct = httpx.get(f"http://127.0.0.1:{card['port']}/no-such-endpoint", headers=auth, timeout=10)
    relayed = admin.get(f"/upstream/{SMOLLM2_ID}/no-such-endpoint")
    assert relayed.status_code == direct.status_code == 404


def test_the_api_key_is_required(service: ServiceProcess) -> None:
    response = httpx.get(service.url + f"/upstream/{SMOLLM2_ID}/props", timeout=10)
    assert response.status_code == 401


def test_get_never_loads_and_post_does(admin: httpx.Client) -> None:
    refused = admin.get(f"/upstream/{COLD_ID}/props")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "model_not_loaded"
    assert _card(admin, COLD_ID)["status"] == "unloaded"
    tokenized = admin.post(f"/upstream/{COLD_ID}/tokenize", json={"content": "hello"})
    assert tokenized.status_code == 200, tokenized.text
    assert tokenized.json()["tokens"]
    assert _card(admin, COLD_ID)["status"] == "loaded"


def test_an_unknown_model_is_404(admin: httpx.Client) -> None:
    assert admin.get("/upstream/no-such-model/props").status_code == 404


def test_posts_through_upstream_wait_for_a_slot_and_count_in_flight(service: ServiceProcess) -> None:
    """Two long /completion POSTs fill the model's two slots and count in flight; a third waits
    in the queue for one of them, then is answered. (The least work that shows it: on a busy
    2-core machine a longer queue outlasted the router's queue timeout.)"""

    def completion(n_predict: int) -> dict[str, Any]:
        return {"prompt": "Count to a thousand:", "n_predict": n_predict, "ignore_eos": True, "temperature": 0}

    def post(body: dict[str, Any]) -> int:
        with httpx.Client(base_url=service.url, timeout=300, headers={"Authorization": f"Bearer {KEY}"}) as http:
            return http.post(f"/upstream/{SMOLLM2_ID}/completion", json=body).status_code

    def gauges() -> tuple[float | None, float | None]:
        text = httpx.get(service.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).text
        return sample(text, "inference_in_flight", model=SMOLLM2_ID), sample(
            text, "inference_queue_depth", model=SMOLLM2_ID
        )

    with ThreadPoolExecutor(3) as pool:
        long_ones = [pool.submit(post, completion(n_predict=48)) for _ in range(2)]  # long enough to be seen
        assert wait_until(lambda: gauges() == (2.0, 0.0), timeout_s=120)
        queued = pool.submit(post, completion(n_predict=4))
        assert wait_until(lambda: gauges() == (2.0, 1.0), timeout_s=120)
        assert [future.result() for future in [*long_ones, queued]] == [200] * 3
