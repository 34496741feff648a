"""Memory estimates from the real GGUF headers of the two tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.runtimes.gguf import read_metadata
from inference_service.supervisor.footprint import estimate_mb, kv_cache_bytes
from tests.support.configs import GEMMA_FILE, SMOLLM2_FILE

pytestmark = pytest.mark.skipif(not SMOLLM2_FILE.is_file() or not GEMMA_FILE.is_file(), reason="run `make setup` first")

MIB = 2**20


def test_reads_smollm2_architecture_from_its_header() -> None:
    metadata = read_metadata(SMOLLM2_FILE)
    # SmolLM2-135M's published config: 30 layers, 9 heads over 3 KV heads, width 576.
    assert metadata["general.architecture"] == "llama"
    assert (metadata["llama.block_count"], metadata["llama.attention.head_count"]) == (30, 9)
    assert (metadata["llama.attention.head_count_kv"], metadata["llama.embedding_length"]) == (3, 576)


def test_smollm2_kv_cache_follows_layers_context_and_kv_width() -> None:
    # 30 layers x 4096 positions x 3 KV heads x (64 key + 64 value dims) x 2 bytes (f16).
    assert kv_cache_bytes(read_metadata(SMOLLM2_FILE), 4096) == 30 * 4096 * 3 * 128 * 2


def test_gemma_kv_cache_uses_its_explicit_key_and_value_lengths() -> None:
    metadata = read_metadata(GEMMA_FILE)
    assert metadata["general.architecture"] == "gemma3"
    # 18 layers x 4096 x 1 KV head x (256 + 256) x 2 bytes: head size is NOT width / heads here.
    assert kv_cache_bytes(metadata, 4096) == 18 * 4096 * 1 * 512 * 2


def test_zero_ctx_size_means_the_models_trained_context() -> None:
    metadata = read_metadata(SMOLLM2_FILE)
    assert kv_cache_bytes(metadata, 0) == kv_cache_bytes(metadata, int(metadata["llama.context_length"]))  # type: ignore[arg-type]


def test_estimate_is_weights_plus_kv_cache_plus_overhead() -> None:
    weights_mb = SMOLLM2_FILE.stat().st_size / MIB
    kv_mb = 30 * 4096 * 3 * 128 * 2 / MIB
    estimate = estimate_mb(SMOLLM2_FILE, 4096)
    assert weights_mb + kv_mb < estimate < weights_mb + kv_mb + 128


def test_estimate_grows_with_ctx_size() -> None:
    assert estimate_mb(GEMMA_FILE, 8192) > estimate_mb(GEMMA_FILE, 2048)


def test_unreadable_header_estimates_weights_only(tmp_path: Path) -> None:
    blob = tmp_path / "blob.gguf"
    blob.write_bytes(b"\0" * (3 * MIB))
    assert estimate_mb(blob, 4096) == estimate_mb(blob, 131072)  # no KV term without a header
    assert 3 <= estimate_mb(blob, 4096) < 3 + 128


def test_no_file_to_read_estimates_nothing(tmp_path: Path) -> None:
    assert estimate_mb(None, 4096) == 0  # not a llama.cpp model
    assert estimate_mb(tmp_path / "not-pulled-yet.gguf", 4096) == 0
