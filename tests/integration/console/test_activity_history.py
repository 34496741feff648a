"""The dashboard's activity table after a restart of the service: it shows the stored history
(GET /v1/activity), and a captured request's row opens what the client sent and got.

Its own router, restarted once: SmolLM2 captured (``capture = true``), one admin key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.configs import SMOLLM2_ID, smollm2, write_config
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

KEY = "k-ops"
PROMPT = "Name a colour."


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    """The router after a restart, and the request id of a chat it answered before it."""
    directory = tmp_path_factory.mktemp("console-history")
    keys = {"ops": {"key": KEY, "scopes": ["admin", "inference", "read"]}}
    config = write_config(directory / "config.toml", {SMOLLM2_ID: smollm2(capture=True)}, keys=keys)
    body = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8, "temperature": 0}
    with running_service(config, directory / "logs") as first:
        answer = httpx.post(first.url + "/v1/chat/completions", json=body, headers=auth(), timeout=120)
        assert answer.status_code == 200, answer.text
    with running_service(config, directory / "logs-restarted") as service:
        yield service, answer.headers["x-request-id"]


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def page(browser: Browser, restarted: tuple[ServiceProcess, str]) -> Iterator[Page]:
    router, _ = restarted
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(router.url + "/ui")
    tab.fill("#key-input", KEY)
    tab.click("#key-form button[type=submit]")
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def row_of(page: Page, request_id: str) -> Locator:
    return page.locator("#activity tbody tr[data-id]", has_text=request_id)


def test_the_activity_table_shows_requests_from_before_the_restart(
    page: Page, restarted: tuple[ServiceProcess, str]
) -> None:
    _, request_id = restarted
    row = row_of(page, request_id)
    expect(row).to_be_visible()
    expect(row).to_contain_text(SMOLLM2_ID)
    expect(row).to_contain_text("chat/completions")


def test_a_captured_row_opens_its_request_and_response(page: Page, restarted: tuple[ServiceProcess, str]) -> None:
    router, request_id = restarted
    row_of(page, request_id).locator('[data-action="capture"]').click()
    dialog = page.locator("#capture-dialog")
    record_id = row_of(page, request_id).get_attribute("data-id")
    expect(dialog).to_have_attribute("data-loaded", record_id or "")
    expect(page.locator("#capture-request-id")).to_have_text(request_id)
    sent = json.loads(page.locator("#capture-request").inner_text())
    assert sent["messages"] == [{"role": "user", "content": PROMPT}]
    captured = httpx.get(f"{router.url}/v1/activity/{record_id}/capture", headers=auth(), timeout=30).json()
    expect(page.locator("#capture-response")).to_have_text(captured["response"]["body"])
    assert json.loads(captured["response"]["body"])["choices"][0]["message"]["content"]
    page.click("#capture-close")
    expect(dialog).to_be_hidden()
