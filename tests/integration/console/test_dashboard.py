"""The dashboard at ``/ui`` in a real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

import os
import re
import signal

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.integration.console.conftest import API_KEY, OFFLINE_ID, PAIR_ID
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


def _row(page: Page, model_id: str) -> Locator:
    return page.locator(f'#models tr[data-model="{model_id}"]')


def _status(page: Page, model_id: str) -> Locator:
    return _row(page, model_id).locator('[data-field="status"]')


def test_page_needs_no_key_but_asks_for_it_once_per_tab(fresh_tab: Page, console_router: ServiceProcess) -> None:
    page = fresh_tab
    page.goto(console_router.url + "/ui")
    expect(page.locator("#key-form")).to_be_visible()
    page.fill("#key-input", "wrong-key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-error")).to_have_text("That key was refused.")
    page.fill("#key-input", API_KEY)
    page.click("#key-form button[type=submit]")
    expect(_status(page, SMOLLM2_ID)).to_have_text("loaded")
    page.reload()  # the same tab keeps the key in session storage: no second prompt
    expect(_status(page, SMOLLM2_ID)).to_have_text("loaded")
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#connection")).to_have_text("live")


def test_models_table_shows_every_model_with_its_process(dashboard: Page, api: httpx.Client) -> None:
    card = api.get(f"/v1/models/{SMOLLM2_ID}").json()
    row = _row(dashboard, SMOLLM2_ID)
    expect(row.locator('[data-field="pid"]')).to_have_text(str(card["pid"]))
    expect(row.locator('[data-field="port"]')).to_have_text(str(card["port"]))
    expect(row.locator('[data-field="rss"]')).to_have_text(re.compile(r"\d+ MB"))
    expect(_row(dashboard, GEMMA_ID).locator('[data-field="runtime"]')).to_have_text("llamacpp")
    expect(_row(dashboard, OFFLINE_ID).locator('[data-field="runtime"]')).to_have_text("remote")


def test_a_model_with_replicas_shows_each_replicas_process_and_state(dashboard: Page, api: httpx.Client) -> None:
    card = api.post(f"/v1/models/{PAIR_ID}/load").json()
    pids = " ".join(f"#{r['replica']} {r['pid']}" for r in card["replicas"])
    row = _row(dashboard, PAIR_ID)
    expect(row.locator('[data-field="pid"]')).to_have_text(pids)
    expect(row.locator('[data-field="replicas"]')).to_have_text("#0 loaded 0+0 · #1 loaded 0+0")
    expect(_status(dashboard, PAIR_ID)).to_have_text("loaded")


def test_load_button_turns_an_unloaded_model_loaded(dashboard: Page, api: httpx.Client) -> None:
    assert api.post(f"/v1/models/{GEMMA_ID}/unload").status_code == 200
    expect(_status(dashboard, GEMMA_ID)).to_have_text("unloaded")

    _row(dashboard, GEMMA_ID).locator('[data-action="load"]').click()

    expect(_status(dashboard, GEMMA_ID)).to_have_text("loaded", timeout=30 * 1000)
    history = _row(dashboard, GEMMA_ID).get_attribute("data-history") or ""
    assert history.split()[-2:] == ["loading", "loaded"], history
    expect(_row(dashboard, GEMMA_ID).locator('[data-field="pid"]')).to_have_text(
        str(api.get(f"/v1/models/{GEMMA_ID}").json()["pid"])
    )


def test_unload_button_turns_a_loaded_model_unloaded(dashboard: Page, api: httpx.Client) -> None:
    if api.get(f"/v1/models/{GEMMA_ID}").json()["status"] != "loaded":
        assert api.post(f"/v1/models/{GEMMA_ID}/load").status_code == 200
    expect(_status(dashboard, GEMMA_ID)).to_have_text("loaded")

    _row(dashboard, GEMMA_ID).locator('[data-action="unload"]').click()

    expect(_status(dashboard, GEMMA_ID)).to_have_text("unloaded", timeout=30 * 1000)
    assert api.get(f"/v1/models/{GEMMA_ID}").json()["status"] == "unloaded"


def test_killed_child_shows_restarting_then_loaded(dashboard: Page, api: httpx.Client) -> None:
    expect(_status(dashboard, SMOLLM2_ID)).to_have_text("loaded")
    pid = api.get(f"/v1/models/{SMOLLM2_ID}").json()["pid"]

    os.kill(pid, signal.SIGKILL)  # our own grandchild, by pid

    # The row keeps the states it was shown (data-history): the brief `restarting` cannot be missed by polling.
    dashboard.wait_for_function(
        """id => { const row = document.querySelector(`#models tr[data-model="${id}"]`);
                   const history = row.dataset.history.split(" ");
                   const at = history.lastIndexOf("restarting");
                   return at >= 0 && history.slice(at).includes("loaded") && row.dataset.status === "loaded"; }""",
        arg=SMOLLM2_ID,
        timeout=120 * 1000,  # order, not speed: a restart is a full, CPU-bound start
    )
    new_pid = api.get(f"/v1/models/{SMOLLM2_ID}").json()["pid"]
    assert new_pid != pid
    expect(_row(dashboard, SMOLLM2_ID).locator('[data-field="pid"]')).to_have_text(str(new_pid))


def test_playground_streams_the_answer_and_logs_it_in_activity(dashboard: Page) -> None:
    dashboard.select_option("#pg-model", SMOLLM2_ID)
    dashboard.fill("#pg-max-tokens", "16")
    dashboard.fill("#pg-message", "Count from one to ten.")
    dashboard.click("#pg-send")

    output = dashboard.locator("#pg-output")
    expect(output).to_have_attribute("data-done", "true", timeout=30 * 1000)
    assert int(output.get_attribute("data-chunks") or 0) > 1, "the answer arrived in one piece, not streamed"
    assert output.inner_text().strip()
    activity = dashboard.locator("#activity tbody tr").first
    expect(activity).to_contain_text(SMOLLM2_ID)
    expect(activity).to_contain_text("chat/completions")


def test_playground_orchestration_mode_shows_the_orchestration_object(dashboard: Page) -> None:
    dashboard.select_option("#pg-model", SMOLLM2_ID)
    dashboard.select_option("#pg-mode", "critique")
    dashboard.fill("#pg-max-tokens", "8")
    dashboard.click("#pg-send")

    expect(dashboard.locator("#pg-output")).to_have_attribute("data-done", "true", timeout=60 * 1000)
    expect(dashboard.locator("#pg-orchestration-box")).to_be_visible()
    expect(dashboard.locator("#pg-orchestration")).to_contain_text('"mode": "critique"')
    expect(dashboard.locator("#pg-stages")).to_contain_text("stage")
    expect(dashboard.locator("#activity tbody tr.stages").first).to_contain_text("critic")


def test_log_panel_follows_the_router_log(dashboard: Page, api: httpx.Client) -> None:
    api.get("/v1/models", headers={"X-Request-ID": "from-the-log-test"})
    expect(dashboard.locator("#log")).to_contain_text("from-the-log-test")
    dashboard.select_option("#log-source", SMOLLM2_ID)
    expect(dashboard.locator("#log")).to_contain_text("llama", timeout=10_000)
