"""A llama-server's slots saved before it stops and restored after it starts.

Prefill is the expensive part of local serving: a conversation whose prefix a slot holds
costs a few tokens per turn, the same conversation after a restart costs all of them again
(SmolLM2, ~2,100 tokens: 2.4 s warm, 41 s after unload + load). So before every graceful
stop - idle TTL, eviction, swap, unload, a reload that restarts the model, shutdown, all of
which stop the runtime - each slot holding a prompt is saved (``POST /slots/{id}?action=save``)
into the model's directory of the :class:`~inference_service.runtimes.kv_store.KVFileStore`;
after the next start, before the model is reported loaded, the newest files are restored
into slots 0, 1, ... Requests need nothing special: llama-server's own slot selection
(``--slot-prompt-similarity``, on by default) sends a returning conversation to the slot
holding its prefix. A crash keeps nothing (there is no process left to save from).

A slot still generating (its request outlasted the drain) is not saved: llama-server would
save it only once it is done, and it is about to be cut off. Both directions are bounded by
``kv_cache_timeout_s``: a save that takes longer is abandoned and the stop goes on; a
restore that takes longer leaves the model loaded with whatever was restored. Neither ever
fails the stop or the load. Each outcome is a ``kv_cache`` event, a line in the model's
log and a line in the router's log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx

from inference_service.config import ModelConfig
from inference_service.events import KV_CACHE, EventBus
from inference_service.processes import ChildProcess
from inference_service.runtimes.kv_store import KVFile, KVFileStore

logger = logging.getLogger(__name__)

#: What a save or restore may run into and goes on past: the connection, the files, and an answer of another
#: shape than llama-server's slots API gives (a missing field, a list for an object) - never a failed stop or load.
_SLOT_ERRORS = (httpx.HTTPError, OSError, ValueError, LookupError, TypeError, AttributeError)


def process_fingerprint(binary: Path, model_path: Path, model: ModelConfig) -> str:
    """What a saved KV cache is only valid for: the model file, the llama-server build (both by
    path, size and mtime), the context and slot layout, and extra arguments (a ``--cache-type-k``
    changes the cache's format). GPU placement and ``cache_ram_mb`` are not part of it."""

    def identity(path: Path) -> list[object]:
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]

    layout = {
        "model": identity(model_path),
        "binary": identity(binary),
        "ctx_size": model.ctx_size,
        "slots": model.concurrency,
        "flash_attn": model.flash_attn,
        "extra_args": model.extra_args,
    }
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()[:32]


def slot_files(model: ModelConfig) -> str:
    """Under which name a replica's slots are kept: each replica its own (slots belong to one process), and
    replica 0 the model's own, ``smol``, whatever ``replicas`` says - so what it saved is restored after a
    change of the count; replica i's are ``smol#i``."""
    return model.replica_name if model.replica_index else model.id


class SlotKeeper:
    """Saves and restores one llamacpp model's slots, through its llama-server's slots API."""

    def __init__(self, model: ModelConfig, store: KVFileStore, timeout_s: float, events: EventBus | None) -> None:
        self._model = model
        self._files = slot_files(model)
        self._store = store
        self._timeout_s = timeout_s
        self._events = events
        self._slots = model.concurrency or 1
        self._fingerprint: str | None = None  # of the process being started; None: its slots are not kept

    async def prepare(self, binary: Path, model_path: Path) -> list[str]:
        """The arguments a new llama-server needs for its slots to be saved (its ``--slot-save-path``).

        A directory that cannot be created costs the continuity of this run, never the load.
        """
        try:
            directory = await self._store.prepare(self._files)
            self._fingerprint = await asyncio.to_thread(process_fingerprint, binary, model_path, self._model)
        except OSError as error:
            logger.warning("model %s: its slots will not be kept across stops: %s", self._model.id, error)
            self._fingerprint = None
            return []
        return ["--slot-save-path", str(directory)]

    async def restore(self, client: httpx.AsyncClient, child: ChildProcess) -> None:
        """Restore the newest saved slots into slots 0, 1, ...; at most ``kv_cache_timeout_s``, never raises."""
        if (fingerprint := self._fingerprint) is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                files, rejected = await self._store.restorable(self._files, fingerprint, self._slots)
                for problem in rejected:
                    self._skipped(child, "restore", problem.reason, f"{problem.name} skipped: {problem.detail}")
                for slot, file in enumerate(files):
                    await self._restore_slot(client, child, slot, file)
        except TimeoutError:
            self._skipped(child, "restore", "timeout", f"restoring took over kv_cache_timeout_s={self._timeout_s:g}")
        except _SLOT_ERRORS as error:  # the load goes on without them
            self._skipped(child, "restore", "error", f"restoring failed: {error!r}")

    async def _restore_slot(self, client: httpx.AsyncClient, child: ChildProcess, slot: int, file: KVFile) -> None:
        started = time.monotonic()
        response = await client.post(f"/slots/{slot}", params={"action": "restore"}, json={"filename": file.name})
        if response.status_code != 200:
            await self._store.discard(file)
            self._skipped(child, "restore", "refused", f"{file.name} skipped: llama-server said {_error(response)}")
            return
        await self._store.touch(file)
        answer = response.json()
        self._report(
            child,
            "restored",
            f"restored slot {slot} from {file.name}",
            slot=slot,
            tokens=answer.get("n_restored", file.tokens),
            bytes=answer.get("n_read", file.size),
            seconds=round(time.monotonic() - started, 3),
        )

    async def save(self, client: httpx.AsyncClient, child: ChildProcess) -> None:
        """Save every slot that holds a prompt; at most ``kv_cache_timeout_s``, never raises."""
        if (fingerprint := self._fingerprint) is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                for slot in (await client.get("/slots")).raise_for_status().json():
                    if slot.get("is_processing"):  # the drain timed out: it is cut off, and a save would wait for it
                        self._skipped(child, "save", "busy", f"slot {slot['id']} still generating: not saved")
                    elif slot.get("n_prompt_tokens", 0) > 0:
                        await self._save_slot(client, child, int(slot["id"]), fingerprint)
        except TimeoutError:
            self._skipped(child, "save", "timeout", f"save abandoned after kv_cache_timeout_s={self._timeout_s:g}")
        except _SLOT_ERRORS as error:  # the stop goes on without it
            self._skipped(child, "save", "error", f"saving failed: {error!r}")

    async def _save_slot(self, client: httpx.AsyncClient, child: ChildProcess, slot: int, fingerprint: str) -> None:
        assert child.pid is not None
        started = time.monotonic()
        partial = self._store.partial_name(self._files, slot, child.pid)
        response = await client.post(f"/slots/{slot}", params={"action": "save"}, json={"filename": partial})
        if response.status_code != 200:
            self._skipped(child, "save", "refused", f"slot {slot} not saved: llama-server said {_error(response)}")
            return
        tokens = int(response.json().get("n_saved", 0))
        saved = await self._store.commit(self._files, slot, partial, tokens, fingerprint, keep=self._slots)
        self._report(
            child,
            "saved",
            f"saved slot {slot} ({tokens} tokens) to {saved.name}",
            slot=slot,
            tokens=tokens,
            bytes=saved.size,
            seconds=round(time.monotonic() - started, 3),
        )

    async def discard_partials(self, child: ChildProcess) -> None:
        """After the process is gone: remove what an abandoned save left half-written."""
        if child.pid is not None:
            await self._store.discard_partials(self._files, child.pid)

    def _report(self, child: ChildProcess, action: str, line: str, **fields: Any) -> None:
        child.note(line)
        logger.info("model %s: %s", self._model.id, line)
        if self._events is not None:
            stored = self._store.saved_bytes(self._files)
            self._events.publish(KV_CACHE, self._model.id, action=action, stored_bytes=stored, **fields)

    def _skipped(self, child: ChildProcess, operation: str, reason: str, line: str) -> None:
        """One warning per problem: an unusable file or a save or restore cut short. It never fails anything."""
        child.note(f"KV cache {operation}: {line}")
        logger.warning("model %s: KV cache %s: %s", self._model.id, operation, line)
        if self._events is not None:
            self._events.publish(
                KV_CACHE, self._model.id, action="skipped", operation=operation, reason=reason, detail=line
            )


def _error(response: httpx.Response) -> str:
    """llama-server's error message, or the status when the body has none."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
