"""Make the README's screenshot of the dashboard (docs/console.png) from a real router.

    .venv/bin/python -m tests.support.console_screenshot [docs/console.png]

The router serves SmolLM2 (captured) and gemma, plus a remote model whose host is down (a
failed row). A few requests are made, the router is restarted - the activity table then shows
them from the history - and the playground streams one more answer; the picture is taken while a
long stream runs (its In flight row, with its Cancel button).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, write_config
from tests.support.service import REPO_ROOT, running_service

CHROMIUM = "/usr/bin/chromium"
QUESTIONS = ["Say hi.", "Name three colours.", "What is 2 + 2?"]
LONG_STREAM_ID = "3f9c2e7d1a6b4c08b5e2d9f4a7c61e30"


@contextmanager
def long_stream(url: str, request_id: str) -> Iterator[None]:
    """A long answer streaming to a client in a thread while the block runs; the client hangs up after it."""
    done = threading.Event()
    body = {"model": GEMMA_ID, "prompt": "Once upon a time", "max_tokens": 900, "ignore_eos": True, "stream": True}

    def read() -> None:
        headers = {"X-Request-ID": request_id}
        with httpx.stream("POST", url + "/v1/completions", json=body, headers=headers, timeout=300) as answer:
            for _ in answer.iter_lines():
                if done.is_set():
                    return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        yield
    finally:
        done.set()
        reader.join()


def take(path: Path) -> None:
    with tempfile.TemporaryDirectory() as directory:
        models = {
            SMOLLM2_ID: smollm2(preload=True, roles=["primary"], ctx_size=1024, capture=True),
            GEMMA_ID: gemma(preload=True, roles=["critic"], ctx_size=1024),
            "remote-gpu": {"runtime": "remote", "url": "http://127.0.0.1:9"},
        }
        config = write_config(Path(directory) / "config.toml", models)
        with running_service(config, Path(directory) / "logs", wait_ready=True) as before:
            for question in QUESTIONS:
                body = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": question}], "max_tokens": 16}
                httpx.post(before.url + "/v1/chat/completions", json=body, timeout=300).raise_for_status()
            completion = {"model": GEMMA_ID, "prompt": "The capital of France is", "max_tokens": 8}
            httpx.post(before.url + "/v1/completions", json=completion, timeout=300).raise_for_status()
        with running_service(config, Path(directory) / "logs", wait_ready=True) as service, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            page.goto(service.url + "/ui")
            expect(page.locator("#activity tbody tr[data-id]")).to_have_count(len(QUESTIONS) + 1)
            page.select_option("#pg-model", SMOLLM2_ID)
            page.fill("#pg-max-tokens", "24")
            page.fill("#pg-message", "In one sentence: why is the sky blue?")
            page.click("#pg-send")
            expect(page.locator("#pg-output")).to_have_attribute("data-done", "true", timeout=300_000)
            expect(page.locator("#activity tbody tr[data-id]")).to_have_count(len(QUESTIONS) + 2)
            with long_stream(service.url, LONG_STREAM_ID):
                expect(page.locator(f'#in-flight tr[data-request="{LONG_STREAM_ID}"]')).to_be_visible(timeout=30_000)
                expect(page.locator("#in-flight tbody tr")).to_have_count(1, timeout=30_000)  # the playground's gone
                page.screenshot(path=str(path), full_page=True)
            browser.close()


if __name__ == "__main__":
    take(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "docs" / "console.png")
