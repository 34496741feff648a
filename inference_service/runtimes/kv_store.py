"""Slot KV caches kept on disk across stops: one directory per model, one disk budget for all.

llama-server writes and reads the files itself (``POST /slots/{id}?action=save|restore``,
inside its ``--slot-save-path``); this store decides which are kept and which may be
restored. A saved file is renamed ``<model>-slot<N>-<sha256 prefix>.bin``: named by its
content, never by the prompt, so saving an unchanged slot again finds the file already
there. Next to it a ``.json`` records the full content hash and the *fingerprint* of the
process that wrote it (model file, build, context and slot layout: see
``runtimes.kv_slots.process_fingerprint``). A file is restorable only while both still match: a
missing, truncated, corrupt or foreign file is removed the first time it is found and
reported, and never reaches llama-server.

The budget (``kv_cache_disk_mb``) is shared by every model: after each save the least
recently used files - saved or restored longest ago, by mtime - go first. A model keeps
at most as many files as it has slots: a start restores one per slot, so older ones could
never be used.

The index of files lives in this process (built from the directory on first use): one
router per directory. Every operation runs whole in a worker thread under one lock, so a
caller that stops waiting (a save abandoned for time) never leaves the index and the
directory disagreeing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

SUFFIX = ".bin"
PARTIAL_SUFFIX = ".partial"
_META_SUFFIX = ".json"
_HASH_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class KVFile:
    """One saved slot: its file, size, and when it was last saved or restored (mtime: the LRU clock)."""

    path: Path
    size: int
    used_at: float
    tokens: int = 0

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Rejected:
    """A file that cannot be restored; ``reason`` is one of missing, truncated, corrupt, foreign."""

    name: str
    reason: str
    detail: str


def file_prefix(model_id: str) -> str:
    """A model's directory and file-name prefix: its id when that is a safe file name, else a readable hash."""
    if _SAFE_NAME.fullmatch(model_id):
        return model_id
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", model_id)[:48].lstrip(".")
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def _metadata_path(path: Path) -> Path:
    return path.with_suffix(_META_SUFFIX)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    for each in (path, _metadata_path(path)):
        with contextlib.suppress(FileNotFoundError):
            each.unlink()


def _check(path: Path, fingerprint: str) -> tuple[int, Rejected | None]:
    """The file's token count, and why it cannot be restored (None: it can)."""
    try:
        metadata = json.loads(_metadata_path(path).read_text())
        expected_size, expected_hash = int(metadata["bytes"]), str(metadata["sha256"])
        found_fingerprint, tokens = metadata.get("fingerprint"), int(metadata.get("tokens", 0))
    except FileNotFoundError:
        return 0, Rejected(path.name, "corrupt", "its metadata file is missing")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return 0, Rejected(path.name, "corrupt", f"unreadable metadata: {error}")
    if found_fingerprint != fingerprint:
        return tokens, Rejected(path.name, "foreign", "saved by another model file, build, ctx_size or slot layout")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return tokens, Rejected(path.name, "missing", "the file is gone")
    if size < expected_size:
        return tokens, Rejected(path.name, "truncated", f"{size} of {expected_size} bytes")
    if size > expected_size or _sha256(path) != expected_hash:
        return tokens, Rejected(path.name, "corrupt", "its content does not match its hash")
    return tokens, None


class KVFileStore:
    """Every model's saved slots under ``root``, least recently used first out beyond ``budget_mb``."""

    def __init__(self, root: Path, budget_mb: int) -> None:
        self.root = root.expanduser()
        self.budget_bytes = budget_mb * 2**20
        self._files: dict[Path, KVFile] | None = None  # None until the directory has been read
        self._bytes: dict[Path, int] = {}  # per model directory: read without the lock (one int each)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    def directory(self, model_id: str) -> Path:
        return self.root / file_prefix(model_id)

    def partial_name(self, model_id: str, slot: int, pid: int) -> str:
        """Where llama-server writes a slot before it is committed: per process, so two never share one."""
        return f"{file_prefix(model_id)}-slot{slot}-{pid}{PARTIAL_SUFFIX}"

    def saved_bytes(self, model_id: str) -> int:
        """Bytes on disk for the model (0 until the directory was first read, when its model first started)."""
        return self._bytes.get(self.directory(model_id), 0)

    # ------------------------------------------------------------------ from the event loop

    async def prepare(self, model_id: str) -> Path:
        """The model's directory, created; the index read (and leftovers of a crash removed) on first use."""
        return await asyncio.to_thread(self._locked, self._prepare, model_id)

    async def commit(self, model_id: str, slot: int, partial: str, tokens: int, fingerprint: str, keep: int) -> KVFile:
        """Name a file llama-server just saved by its content, record it, and make room (see :meth:`_prune`)."""
        return await asyncio.to_thread(self._locked, self._commit, model_id, slot, partial, tokens, fingerprint, keep)

    async def restorable(self, model_id: str, fingerprint: str, limit: int) -> tuple[list[KVFile], list[Rejected]]:
        """The model's ``limit`` most recently used files that can be restored, newest first.

        Files found unusable on the way are removed and returned as rejected.
        """
        return await asyncio.to_thread(self._locked, self._restorable, model_id, fingerprint, limit)

    async def touch(self, file: KVFile) -> None:
        """Mark a restored file as just used (LRU)."""
        await asyncio.to_thread(self._locked, self._touch, file)

    async def discard(self, file: KVFile) -> None:
        """Remove a file llama-server refused to restore."""
        await asyncio.to_thread(self._locked, self._forget, file.path)

    async def discard_partials(self, model_id: str, pid: int) -> None:
        """Remove what a stopped process left half-written (a save abandoned for time)."""
        pattern = f"{file_prefix(model_id)}-slot*-{pid}{PARTIAL_SUFFIX}"
        for path in await asyncio.to_thread(lambda: list(self.directory(model_id).glob(pattern))):
            await asyncio.to_thread(path.unlink, missing_ok=True)

    # ------------------------------------------------------------------ in a worker thread, under the lock

    def _locked(self, operation: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            if self._files is None:
                self._files = self._scan()
                self._count()
            return operation(*args, **kwargs)

    def _scan(self) -> dict[Path, KVFile]:
        files: dict[Path, KVFile] = {}
        for path in self.root.glob(f"*/*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                files[path] = KVFile(path, stat.st_size, stat.st_mtime)
        for path in self.root.glob(f"*/*{PARTIAL_SUFFIX}"):  # a save cut short by a crash: nobody writes it now
            path.unlink(missing_ok=True)
        return files

    def _count(self) -> None:
        assert self._files is not None
        totals: dict[Path, int] = {}
        for file in self._files.values():
            totals[file.path.parent] = totals.get(file.path.parent, 0) + file.size
        self._bytes = totals

    def _prepare(self, model_id: str) -> Path:
        directory = self.directory(model_id)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _commit(self, model_id: str, slot: int, partial: str, tokens: int, fingerprint: str, keep: int) -> KVFile:
        assert self._files is not None
        directory = self.directory(model_id)
        source = directory / partial
        digest = _sha256(source)
        final = directory / f"{file_prefix(model_id)}-slot{slot}-{digest[:16]}{SUFFIX}"
        if final in self._files and final.is_file():
            source.unlink()  # the same content is kept already: it was just used again
            os.utime(final)
        else:
            os.replace(source, final)
            metadata = {"sha256": digest, "bytes": final.stat().st_size, "tokens": tokens, "fingerprint": fingerprint}
            staging = final.with_suffix(".tmp")
            staging.write_text(json.dumps(metadata))
            os.replace(staging, _metadata_path(final))
        stat = final.stat()
        saved = KVFile(final, stat.st_size, stat.st_mtime, tokens)
        self._files[final] = saved
        self._prune(saved, keep)
        self._count()
        return saved

    def _prune(self, saved: KVFile, keep: int) -> None:
        """Remove the model's files beyond ``keep`` (newest kept), then the oldest of all until within budget.

        A file larger than the whole budget is not kept, and costs no other file its place.
        """
        assert self._files is not None
        if saved.size > self.budget_bytes:
            self._forget(saved.path)
            return
        ours = [f for f in self._files.values() if f.path.parent == saved.path.parent and f.path != saved.path]
        doomed = sorted(ours, key=lambda f: -f.used_at)[max(keep - 1, 0) :]
        remaining = [file for file in self._files.values() if file not in doomed]
        total = sum(file.size for file in remaining)
        for file in sorted((f for f in remaining if f.path != saved.path), key=lambda f: f.used_at):
            if total <= self.budget_bytes:
                break
            doomed.append(file)
            total -= file.size
        for file in doomed:
            self._forget(file.path)

    def _restorable(self, model_id: str, fingerprint: str, limit: int) -> tuple[list[KVFile], list[Rejected]]:
        assert self._files is not None
        directory = self.directory(model_id)
        newest = sorted((f for f in self._files.values() if f.path.parent == directory), key=lambda f: -f.used_at)
        usable: list[KVFile] = []
        rejected: list[Rejected] = []
        for file in newest:
            if len(usable) == limit:
                break
            tokens, problem = _check(file.path, fingerprint)
            if problem is None:
                usable.append(KVFile(file.path, file.size, file.used_at, tokens))
            else:
                rejected.append(problem)
                self._forget(file.path)
        return usable, rejected

    def _touch(self, file: KVFile) -> None:
        assert self._files is not None
        if file.path in self._files:
            now = time.time()
            os.utime(file.path, (now, now))
            self._files[file.path] = KVFile(file.path, file.size, now, file.tokens)

    def _forget(self, path: Path) -> None:
        assert self._files is not None
        self._files.pop(path, None)
        _remove(path)
        self._count()
