"""Which changes make a saved slot foreign: what the KV cache's content depends on, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.config import ModelConfig
from inference_service.runtimes.kv_slots import process_fingerprint


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    binary, model = tmp_path / "llama-server", tmp_path / "model.gguf"
    binary.write_bytes(b"build 1")
    model.write_bytes(b"weights")
    return binary, model


def fingerprint(files: tuple[Path, Path], **fields: object) -> str:
    binary, model = files
    return process_fingerprint(binary, model, ModelConfig.model_validate({"id": "m", "path": model, **fields}))


@pytest.mark.parametrize(
    "change", [{"ctx_size": 4096}, {"parallel": 2}, {"flash_attn": True}, {"extra_args": ["-ctk", "q8_0"]}]
)
def test_a_change_of_cache_layout_makes_saved_slots_foreign(
    files: tuple[Path, Path], change: dict[str, object]
) -> None:
    assert fingerprint(files, **change) != fingerprint(files)


@pytest.mark.parametrize("change", [{"cache_ram_mb": 0}, {"n_gpu_layers": 0}, {"ttl_s": 60}, {"aliases": ["x"]}])
def test_settings_that_leave_the_cache_alone_keep_saved_slots_valid(
    files: tuple[Path, Path], change: dict[str, object]
) -> None:
    assert fingerprint(files, **change) == fingerprint(files)


def test_another_model_file_or_build_makes_saved_slots_foreign(files: tuple[Path, Path]) -> None:
    before = fingerprint(files)
    binary, model = files
    model.write_bytes(b"other weights")
    after_model = fingerprint(files)
    binary.write_bytes(b"build 2, longer")
    assert len({before, after_model, fingerprint(files)}) == 3
