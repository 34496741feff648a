"""One router for the console tests, with an API key, as an ops team would run it.

- SmolLM2 is preloaded (requests, streaming, a child to kill);
- gemma is configured but not loaded (the dashboard's Load button);
- ``pair`` is SmolLM2 on two replicas, not loaded (the replicas in the models table);
- ``offline`` is a remote model whose host is down: requests to it fail at once, which
  makes request events cheap to produce.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, write_config
from tests.support.service import ServiceProcess, free_port, running_service

API_KEY = "console-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
OFFLINE_ID = "offline"
PAIR_ID = "pair"


@pytest.fixture(scope="package")
def console_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("console")
    models: dict[str, dict[str, Any]] = {
        SMOLLM2_ID: smollm2(preload=True, aliases=["smol"], roles=["primary", "fast"], ctx_size=1024),
        GEMMA_ID: gemma(roles=["critic"]),
        PAIR_ID: smollm2(replicas=2, parallel=1, ctx_size=512),
        OFFLINE_ID: {"runtime": "remote", "url": f"http://127.0.0.1:{free_port()}"},
    }
    config = write_config(directory / "config.toml", models, api_key=API_KEY, default_model=SMOLLM2_ID)
    with running_service(config, directory / "logs", wait_ready=True) as service:
        yield service


@pytest.fixture
def api(console_router: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console_router.url, headers=AUTH, timeout=120.0) as client:
        yield client


def chat_body(model: str = SMOLLM2_ID, max_tokens: int = 8, **fields: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 7,
        **fields,
    }


CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by Playwright (its own browser download is not reachable here)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `make test` installs it (apt-get install chromium)", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def fresh_tab(browser: Browser) -> Iterator[Page]:
    """A tab in a browser context of its own (no key in its session storage); closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


@pytest.fixture
def dashboard(fresh_tab: Page, console_router: ServiceProcess) -> Iterator[Page]:
    """The dashboard in a fresh tab, the API key entered once; console errors fail the test."""
    page = fresh_tab
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(console_router.url + "/ui")
    page.fill("#key-input", API_KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator(f'#models tr[data-model="{SMOLLM2_ID}"]')).to_be_visible()
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"
