"""The on-disk store of saved slots: naming by content, LRU within the disk budget, and refusing bad files.

Real files in a temporary directory; a "save" is what llama-server does - a file written
under the partial name in the model's directory - followed by the store's commit.
"""

from __future__ import annotations

import os
from pathlib import Path

from inference_service.runtimes.kv_store import KVFile, KVFileStore, file_prefix

MiB = 2**20
FINGERPRINT = "f" * 32
PID = 4242


async def save(store: KVFileStore, model_id: str, content: bytes, slot: int = 0, keep: int = 4) -> KVFile:
    """What a stop does for one slot: llama-server writes the partial file, the store commits it."""
    directory = await store.prepare(model_id)
    partial = store.partial_name(model_id, slot, PID)
    (directory / partial).write_bytes(content)
    return await store.commit(model_id, slot, partial, tokens=len(content) // 100, fingerprint=FINGERPRINT, keep=keep)


def age(file: KVFile, seconds_ago: float) -> None:
    """Set a file's LRU clock back (as if saved that long ago)."""
    when = file.path.stat().st_mtime - seconds_ago
    os.utime(file.path, (when, when))


def kept(store: KVFileStore) -> set[str]:
    return {path.name for path in store.root.glob("*/*.bin")}


def partials(store: KVFileStore) -> list[Path]:
    return list(store.root.glob("*/*.partial"))


async def test_a_saved_slot_is_named_by_model_slot_and_content_hash(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    saved = await save(store, "smol", b"kv" * 1000, slot=3)
    assert saved.name.startswith("smol-slot3-") and saved.name.endswith(".bin")
    assert kept(store) == {saved.name}
    assert not partials(store)


async def test_saving_the_same_content_again_keeps_one_file(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    first = await save(store, "smol", b"same" * 1000)
    second = await save(store, "smol", b"same" * 1000)
    assert first.path == second.path
    assert kept(store) == {first.name}


async def test_with_the_disk_budget_full_the_least_recently_used_files_go_first(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=3)
    oldest = await save(store, "a", b"1" * MiB)
    middle = await save(store, "b", b"2" * MiB)
    age(oldest, 60)
    age(middle, 30)
    newest = await save(store, "c", b"3" * MiB)  # 3 MiB: still within the budget
    assert kept(store) == {oldest.name, middle.name, newest.name}
    latest = await save(store, "d", b"4" * MiB)
    assert kept(store) == {middle.name, newest.name, latest.name}


async def test_a_restored_file_counts_as_recently_used(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=2)
    restored = await save(store, "a", b"1" * MiB)
    other = await save(store, "b", b"2" * MiB)
    age(restored, 60)
    age(other, 30)
    await store.touch(restored)
    await save(store, "c", b"3" * MiB)
    assert restored.name in kept(store) and other.name not in kept(store)


async def test_a_model_keeps_no_more_files_than_it_has_slots(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    first = await save(store, "smol", b"1" * 1000, keep=2)
    age(first, 60)
    second = await save(store, "smol", b"2" * 1000, keep=2)
    third = await save(store, "smol", b"3" * 1000, keep=2)
    assert kept(store) == {second.name, third.name}


async def test_a_file_larger_than_the_whole_budget_is_not_kept(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=1)
    small = await save(store, "a", b"1" * 1000)
    await save(store, "b", b"2" * (2 * MiB))
    assert kept(store) == {small.name}


async def test_saved_bytes_counts_each_models_files(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    await save(store, "a", b"1" * 3000, slot=0)
    await save(store, "a", b"2" * 5000, slot=1)
    await save(store, "b", b"3" * 7000)
    assert (store.saved_bytes("a"), store.saved_bytes("b"), store.saved_bytes("c")) == (8000, 7000, 0)


async def test_restorable_files_come_newest_first_up_to_the_slot_count(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    old = await save(store, "smol", b"1" * 1000, slot=0)
    age(old, 60)
    new = await save(store, "smol", b"2" * 1000, slot=1)
    usable, rejected = await store.restorable("smol", FINGERPRINT, limit=1)
    assert [file.name for file in usable] == [new.name] and rejected == []
    usable, _ = await store.restorable("smol", FINGERPRINT, limit=2)
    assert [file.name for file in usable] == [new.name, old.name]


async def test_a_corrupt_file_is_rejected_and_removed(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    saved = await save(store, "smol", b"kv" * 1000)
    data = bytearray(saved.path.read_bytes())
    data[100] ^= 0xFF
    saved.path.write_bytes(data)
    usable, rejected = await store.restorable("smol", FINGERPRINT, limit=1)
    assert usable == [] and [problem.reason for problem in rejected] == ["corrupt"]
    assert kept(store) == set() and store.saved_bytes("smol") == 0


async def test_a_truncated_file_is_rejected(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    saved = await save(store, "smol", b"kv" * 1000)
    saved.path.write_bytes(saved.path.read_bytes()[:500])
    _, rejected = await store.restorable("smol", FINGERPRINT, limit=1)
    assert [problem.reason for problem in rejected] == ["truncated"]


async def test_a_file_from_another_model_file_or_build_is_rejected_as_foreign(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    await save(store, "smol", b"kv" * 1000)
    usable, rejected = await store.restorable("smol", "another process layout", limit=1)
    assert usable == [] and [problem.reason for problem in rejected] == ["foreign"]


async def test_a_file_gone_from_disk_is_rejected_as_missing(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    saved = await save(store, "smol", b"kv" * 1000)
    saved.path.unlink()
    _, rejected = await store.restorable("smol", FINGERPRINT, limit=1)
    assert [problem.reason for problem in rejected] == ["missing"]


async def test_a_file_without_its_metadata_is_rejected_as_corrupt(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    saved = await save(store, "smol", b"kv" * 1000)
    saved.path.with_suffix(".json").unlink()
    _, rejected = await store.restorable("smol", FINGERPRINT, limit=1)
    assert [problem.reason for problem in rejected] == ["corrupt"]


async def test_a_new_store_finds_the_files_saved_by_the_last_router(tmp_path: Path) -> None:
    saved = await save(KVFileStore(tmp_path, budget_mb=16), "smol", b"kv" * 1000)
    reopened = KVFileStore(tmp_path, budget_mb=16)
    usable, _ = await reopened.restorable("smol", FINGERPRINT, limit=1)
    assert [file.name for file in usable] == [saved.name] and reopened.saved_bytes("smol") == 2000


async def test_half_written_saves_left_by_a_crash_are_removed_on_first_use(tmp_path: Path) -> None:
    leftover = tmp_path / "smol" / "smol-slot0-999.partial"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half")
    await KVFileStore(tmp_path, budget_mb=16).prepare("smol")
    assert not leftover.exists()


async def test_partials_of_a_stopped_process_are_discarded(tmp_path: Path) -> None:
    store = KVFileStore(tmp_path, budget_mb=16)
    directory = await store.prepare("smol")
    ours, others = directory / store.partial_name("smol", 0, PID), directory / store.partial_name("smol", 0, PID + 1)
    ours.write_bytes(b"abandoned")
    others.write_bytes(b"being written")
    await store.discard_partials("smol", PID)
    assert not ours.exists() and others.exists()


def test_a_model_id_unsafe_as_a_file_name_gets_a_distinct_safe_prefix() -> None:
    assert file_prefix("smollm2-135m-instruct") == "smollm2-135m-instruct"
    slashed, underscored = file_prefix("org/model:7b"), file_prefix("org_model_7b")
    assert "/" not in slashed and ":" not in slashed and slashed != underscored
    assert not file_prefix("..").startswith(".")
