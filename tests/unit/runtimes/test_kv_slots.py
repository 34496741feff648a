"""A llama-server's slots kept across stops: each replica saves in its own directory, replica 0 in the same one
whatever the replica count (a reload changing ``replicas`` loses nothing), and a save or restore the slots API
answers strangely is skipped, never fails the stop or the load."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from inference_service.config import ModelConfig
from inference_service.events import EventBus
from inference_service.processes import ChildProcess
from inference_service.runtimes.kv_slots import SlotKeeper, process_fingerprint
from inference_service.runtimes.kv_store import KVFileStore
from tests.support.recording_host import RecordingHost, recording_host


async def save_path(tmp_path: Path, model: ModelConfig) -> list[str]:
    """The ``--slot-save-path`` arguments a llama-server of ``model`` is started with."""
    binary, weights = tmp_path / "llama-server", tmp_path / "model.gguf"
    binary.write_bytes(b"build 1")
    weights.write_bytes(b"weights")
    keeper = SlotKeeper(model, KVFileStore(tmp_path / "kv", budget_mb=16), timeout_s=5, events=None)
    return await keeper.prepare(binary, weights)


async def test_replica_0_saves_its_slots_where_it_did_before_replicas_was_raised(tmp_path: Path) -> None:
    one = ModelConfig(id="m", path=tmp_path / "model.gguf", replicas=1)
    two = one.model_copy(update={"replicas": 2})
    assert await save_path(tmp_path, two.replica(0)) == await save_path(tmp_path, one.replica(0))


async def test_each_replica_saves_its_slots_in_a_directory_of_its_own(tmp_path: Path) -> None:
    two = ModelConfig(id="m", path=tmp_path / "model.gguf", replicas=2)
    assert await save_path(tmp_path, two.replica(1)) != await save_path(tmp_path, two.replica(0))


@pytest.fixture
def llama_server() -> Iterator[RecordingHost]:
    """Where the slots API is asked: a host answering 200 with ``reply``, which a test sets to an answer of
    another shape than llama-server's (a real one cannot be made to give it)."""
    with recording_host() as host:
        yield host


@dataclass
class Kept:
    """A llamacpp model ``m`` whose slots are kept in ``store``, its model file and llama-server binary."""

    keeper: SlotKeeper
    store: KVFileStore
    binary: Path
    weights: Path


def kept_slots(tmp_path: Path, events: EventBus) -> Kept:
    binary, weights = tmp_path / "llama-server", tmp_path / "model.gguf"
    binary.write_bytes(b"build 1")
    weights.write_bytes(b"weights")
    store = KVFileStore(tmp_path / "kv", budget_mb=16)
    return Kept(
        SlotKeeper(ModelConfig(id="m", path=weights), store, timeout_s=5, events=events), store, binary, weights
    )


def skipped(events: EventBus) -> list[str]:
    """The ``reason`` of every ``kv_cache`` event that says a save or restore was cut short."""
    reasons: list[str] = []
    events.listen(lambda event: reasons.append(event.data["reason"]) if event.data.get("action") == "skipped" else None)
    return reasons


async def test_a_slots_list_of_another_shape_skips_the_save_instead_of_failing_the_stop(
    tmp_path: Path, llama_server: RecordingHost
) -> None:
    events = EventBus()
    kept = kept_slots(tmp_path, events)
    await kept.keeper.prepare(kept.binary, kept.weights)
    reasons = skipped(events)
    llama_server.reply = b'[{"n_prompt_tokens": 12}]'  # a slot without its id
    async with httpx.AsyncClient(base_url=llama_server.url) as client:
        await kept.keeper.save(client, ChildProcess(["llama-server"], name="llama-server[m]"))
    assert reasons == ["error"]


async def test_a_restore_answer_of_another_shape_skips_the_restore_instead_of_failing_the_load(
    tmp_path: Path, llama_server: RecordingHost
) -> None:
    events = EventBus()
    kept = kept_slots(tmp_path, events)
    directory, partial = await kept.store.prepare("m"), kept.store.partial_name("m", 0, 4242)
    (directory / partial).write_bytes(b"slot 0")  # what an earlier run of the model saved
    fingerprint = process_fingerprint(kept.binary, kept.weights, ModelConfig(id="m", path=kept.weights))
    await kept.store.commit("m", 0, partial, tokens=12, fingerprint=fingerprint, keep=1)
    await kept.keeper.prepare(kept.binary, kept.weights)
    reasons = skipped(events)
    llama_server.reply = b"[]"  # a list where llama-server answers an object
    async with httpx.AsyncClient(base_url=llama_server.url) as client:
        await kept.keeper.restore(client, ChildProcess(["llama-server"], name="llama-server[m]"))
    assert (reasons, llama_server.paths()) == (["error"], ["/slots/0?action=restore"])
