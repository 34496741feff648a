"""The dashboard offers what its key may do: a read-only key sees the models, never the actions;
the usage table shows each key's usage to an admin, a key's own to any other.

Its own router: keys with different scopes and one remote model (nothing to load) on a host
that answers at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.configs import write_config
from tests.support.recording_host import recording_host
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

MODEL_ID = "offline"
KEYS = {"viewer": ("k-viewer", ["read"]), "ops": ("k-ops", ["admin", "inference", "read"])}
USAGE = {"prompt_tokens": 7, "completion_tokens": 11}


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("console-scopes")
    keys = {name: {"key": secret, "scopes": scopes} for name, (secret, scopes) in KEYS.items()}
    with recording_host() as host:
        host.reply = json.dumps({"object": "chat.completion", "choices": [], "usage": USAGE}).encode()
        models = {MODEL_ID: {"runtime": "remote", "url": host.url}}
        config = write_config(directory / "config.toml", models, keys=keys)
        with running_service(config, directory / "logs") as service:
            yield service


def open_as(browser: Browser, router: ServiceProcess, key: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(router.url + "/ui")
    page.fill("#key-input", KEYS[key][0])
    page.click("#key-form button[type=submit]")
    expect(page.locator(f'#models tr[data-model="{MODEL_ID}"]')).to_be_visible()
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def viewer(browser: Browser, router: ServiceProcess) -> Iterator[Page]:
    yield from open_as(browser, router, "viewer")


@pytest.fixture
def ops(browser: Browser, router: ServiceProcess) -> Iterator[Page]:
    yield from open_as(browser, router, "ops")


def test_a_read_only_key_sees_the_models_but_no_action_logs_or_playground(viewer: Page) -> None:
    expect(viewer.locator(f'#models tr[data-model="{MODEL_ID}"] [data-action="load"]')).to_be_hidden()
    expect(viewer.locator("#logs-section")).to_be_hidden()
    expect(viewer.locator("#in-flight-box")).to_be_attached()  # on the page, not offered: requests to cancel
    expect(viewer.locator("#in-flight-box")).to_be_hidden()
    expect(viewer.locator("#playground-section")).to_be_hidden()
    expect(viewer.locator("#connection")).to_have_text("live")  # events need only `read`


def test_a_key_with_every_scope_sees_everything(ops: Page) -> None:
    expect(ops.locator(f'#models tr[data-model="{MODEL_ID}"] [data-action="load"]')).to_be_visible()
    expect(ops.locator("#logs-section")).to_be_visible()
    expect(ops.locator("#in-flight-box")).to_be_visible()
    expect(ops.locator("#playground-section")).to_be_visible()


def test_the_usage_table_shows_a_keys_calls_and_tokens(router: ServiceProcess, ops: Page) -> None:
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(router.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k-ops"})
    assert answer.status_code == 200, answer.text
    row = ops.locator(f'#usage tr[data-key="ops"][data-model="{MODEL_ID}"]')
    expect(row).to_contain_text("ops", timeout=30 * 1000)  # the table refreshes every few seconds
    expect(row.locator("td").nth(2)).to_have_text("1")
    expect(row.locator("td").nth(3)).to_have_text("7")
    expect(row.locator("td").nth(4)).to_have_text("11")
