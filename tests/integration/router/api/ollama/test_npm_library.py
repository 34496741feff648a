"""The ``ollama`` npm library (Ollama's JavaScript client) streams a chat through the router.

It is installed from the npm registry into a folder of the test run (pinned, never committed),
then driven by a small ES module under node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

OLLAMA_JS = "ollama@0.6.3"
STREAMED_CHAT = """
import { Ollama } from 'ollama';
const client = new Ollama({ host: process.argv[2] });
const parts = [];
const stream = await client.chat({
  model: 'smol', stream: true, options: { num_predict: 4, temperature: 0 },
  messages: [{ role: 'user', content: 'Say hi.' }],
});
for await (const part of stream) parts.push(part);
console.log(JSON.stringify(parts));
"""


@pytest.fixture(scope="module")
def ollama_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the npm library installed and the script beside it."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed for this test (node and npm come with the machine)"
    folder = tmp_path_factory.mktemp("ollama-js")
    subprocess.run(
        [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", OLLAMA_JS],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (folder / "chat.mjs").write_text(STREAMED_CHAT)
    return folder


def test_the_javascript_library_streams_a_chat_to_its_done_object(ollama_js: Path, router: ServiceProcess) -> None:
    node = shutil.which("node")
    assert node is not None
    run = subprocess.run(
        [node, str(ollama_js / "chat.mjs"), router.url], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr
    parts = json.loads(run.stdout)
    assert [part["done"] for part in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(part["message"]["content"] for part in parts)
    assert parts[-1]["eval_count"] == 4
