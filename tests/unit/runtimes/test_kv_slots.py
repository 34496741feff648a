"""Where a llama-server's slots are saved: each replica its own directory, replica 0's the same whatever the
replica count, so a reload changing ``replicas`` does not lose what it saved."""

from __future__ import annotations

from pathlib import Path

from inference_service.config import ModelConfig
from inference_service.runtimes.kv_slots import SlotKeeper
from inference_service.runtimes.kv_store import KVFileStore


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
